//! The one way a response becomes bytes, shared by the handler (which
//! sends it) and the trim (which measures it).
//!
//! Sizes must come from this very encoding: hickory's server echoes the
//! client's question bytes verbatim, so later names cannot point into it,
//! and it keeps only so many compression targets per message. A message
//! built any other way compresses differently and measures short.

use std::iter::{self, Empty};
use std::slice::Iter;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncoder, NameEncoding};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

/// The record sections of a response.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sections<'r> {
    pub(crate) answers: &'r [Record],
    pub(crate) authorities: &'r [Record],
    pub(crate) additionals: &'r [Record],
}

/// The response hickory writes: the request's `queries` as received,
/// then `sections`, then `edns` as the OPT record.
pub(crate) fn response<'q, 'r>(
    queries: &'q Queries,
    edns: Option<&'q Edns>,
    metadata: Metadata,
    sections: Sections<'r>,
) -> MessageResponse<'q, 'r, Iter<'r, Record>, Iter<'r, Record>, Empty<&'r Record>, Iter<'r, Record>>
{
    MessageResponseBuilder::new(queries, edns).build(
        metadata,
        sections.answers.iter(),
        sections.authorities.iter(),
        iter::empty(),
        sections.additionals.iter(),
    )
}

/// How many bytes [`response`] encodes to, with names written as `names`
/// says; `None` if it cannot be encoded whole (hickory drops the records
/// past 64 KiB). The header's flags and codes have fixed widths, so any
/// will do.
pub(crate) fn encoded_len(
    queries: &Queries,
    edns: Option<&Edns>,
    sections: Sections<'_>,
    names: NameEncoding,
) -> Option<usize> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_name_encoding(names);
    let metadata = Metadata::new(0, MessageType::Response, OpCode::Query);
    let written = response(queries, edns, metadata, sections)
        .destructive_emit(&mut encoder)
        .ok()?;
    (!written.truncation).then_some(bytes.len())
}
