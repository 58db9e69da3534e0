//! Cutting responses down to what the transport carries, by Consul's rules
//! (`trimUDPResponse`, `trimTCPResponse`).

use std::collections::HashSet;

use hickory_proto::op::Edns;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::NameEncoding;
use hickory_server::zone_handler::Queries;

use crate::answer::Reply;
use crate::wire::{self, Sections};

/// The largest response to a query without EDNS.
const DEFAULT_UDP_SIZE: usize = 512;

/// The most a UDP response is ever allowed, whatever EDNS asks for.
const MAX_UDP_DATAGRAM: usize = u16::MAX as usize - 68;

/// A TCP message's limit, less the header overhead Consul allows for.
const MAX_TCP_SIZE: usize = 65523;

/// The UDP header, which the size limit includes.
const UDP_HEADER: usize = 8;

/// How a response travels.
pub(crate) struct Transport<'a> {
    pub(crate) udp: bool,
    /// The request's questions, which the response echoes as received.
    pub(crate) queries: &'a Queries,
    /// The OPT record the response carries, if the query had EDNS.
    pub(crate) edns: Option<&'a Edns>,
    /// The configured UDP answer limit (already capped at 8).
    pub(crate) udp_answer_limit: usize,
}

/// The size of `reply` as the handler sends it over `transport`.
fn encoded_size(reply: &Reply, transport: &Transport<'_>, names: NameEncoding) -> usize {
    let sections = Sections {
        answers: &reply.answers,
        authorities: &reply.authorities,
        additionals: &reply.additionals,
    };
    wire::encoded_len(transport.queries, transport.edns, sections, names).unwrap_or(usize::MAX)
}

/// A name's length with every label spelled out.
fn uncompressed_len(name: &Name) -> usize {
    name.iter().map(|label| 1 + label.len()).sum::<usize>() + 1
}

/// An upper bound on the encoded size that spares encoding the records:
/// the question and OPT record measured, every record counted with its
/// names uncompressed. Records of a kind it cannot size make it give up.
fn size_bound(reply: &Reply, transport: &Transport<'_>) -> usize {
    let record = |r: &Record| -> Option<usize> {
        let rdata = match &r.data {
            RData::A(_) => 4,
            RData::AAAA(_) => 16,
            RData::SRV(srv) => 6 + uncompressed_len(&srv.target),
            RData::CNAME(name) => uncompressed_len(&name.0),
            RData::TXT(txt) => txt.txt_data.iter().map(|d| d.len() + 1).sum(),
            _ => return None,
        };
        // Type, class, TTL and data length.
        Some(uncompressed_len(&r.name) + 10 + rdata)
    };
    let Some(mut total) = wire::encoded_len(
        transport.queries,
        transport.edns,
        Sections::default(),
        NameEncoding::Uncompressed,
    ) else {
        return usize::MAX;
    };
    for r in reply
        .answers
        .iter()
        .chain(&reply.authorities)
        .chain(&reply.additionals)
    {
        match record(r) {
            Some(size) => total += size,
            None => return usize::MAX,
        }
    }
    total
}

/// Keeps only the additional records that back a remaining SRV answer.
fn sync_additionals(reply: &mut Reply) {
    let targets: HashSet<LowerName> = reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(LowerName::new(&srv.target)),
            _ => None,
        })
        .collect();
    reply.additionals.retain(|record| {
        matches!(
            record.record_type(),
            RecordType::A | RecordType::AAAA | RecordType::CNAME
        ) && targets.contains(&LowerName::new(&record.name))
    });
}

/// Cuts `reply` to fit; returns whether any answer was dropped.
pub(crate) fn trim(reply: &mut Reply, transport: &Transport<'_>) -> bool {
    let original = reply.answers.len();
    let mut names = NameEncoding::Compressed;
    let max_size = if transport.udp {
        let edns_size = transport
            .edns
            .map_or(0, |edns| usize::from(edns.max_payload()));
        let max_size = edns_size.clamp(DEFAULT_UDP_SIZE, MAX_UDP_DATAGRAM);
        // Without (a larger) EDNS, only a few answers are sent at all, and
        // Consul then sizes them as if uncompressed, to stay under 512
        // bytes even for a relay that expands names.
        if max_size == DEFAULT_UDP_SIZE && original > transport.udp_answer_limit {
            names = NameEncoding::Uncompressed;
            reply.answers.truncate(transport.udp_answer_limit.max(1));
            sync_additionals(reply);
        }
        max_size - UDP_HEADER
    } else {
        let srv = transport
            .queries
            .queries()
            .first()
            .is_some_and(|query| query.query_type() == RecordType::SRV);
        // More than this many records never fit in 64 KiB.
        let most = if srv { 1024 } else { 4096 };
        if original > most {
            reply.answers.truncate(most);
            sync_additionals(reply);
        }
        MAX_TCP_SIZE
    };
    if reply.answers.len() > 1
        && size_bound(reply, transport) > max_size
        && encoded_size(reply, transport, names) > max_size
    {
        reply.authorities.clear();
        // The most answers that fit (one is sent even if it does not). What
        // is kept was measured as sent, so it fits.
        let (mut fits, mut too_many) = (1, reply.answers.len());
        while too_many - fits > 1 {
            let middle = fits + (too_many - fits) / 2;
            let mut candidate = Reply {
                answers: reply.answers[..middle].to_vec(),
                additionals: reply.additionals.clone(),
                ..Reply::default()
            };
            sync_additionals(&mut candidate);
            if encoded_size(&candidate, transport, names) <= max_size {
                fits = middle;
            } else {
                too_many = middle;
            }
        }
        reply.answers.truncate(fits);
        sync_additionals(reply);
    }
    reply.answers.len() < original
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Metadata, Query};
    use hickory_proto::rr::rdata::{A, SRV, TXT};
    use hickory_proto::serialize::binary::BinEncoder;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::server::Request;
    use hickory_server::zone_handler::MessageResponseBuilder;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    const SERVICE: &str = "web.service.consul.";

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    /// A request as the server receives it over UDP.
    fn request(qname: &str, qtype: RecordType, edns_size: Option<u16>) -> Request {
        let mut message = Message::query();
        message.add_query(Query::query(name(qname), qtype));
        if let Some(size) = edns_size {
            message.set_edns(edns(size));
        }
        let source = "127.0.0.1:53000".parse().unwrap();
        Request::from_bytes(message.to_vec().unwrap(), source, Protocol::Udp).unwrap()
    }

    fn edns(size: u16) -> Edns {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        edns
    }

    /// An SRV reply for `qname`: one instance per node number in `nodes`,
    /// each with its node's address as an additional record.
    fn srv_farm(qname: &str, nodes: &[u32]) -> Reply {
        let mut reply = Reply::default();
        for &n in nodes {
            let target = name(&format!("web{n}.node.dc1.consul."));
            let srv = SRV::new(1, 1, 8080, target.clone());
            reply
                .answers
                .push(Record::from_rdata(name(qname), 0, RData::SRV(srv)));
            let address = A::new(10, 0, (n / 256) as u8, (n % 256) as u8);
            reply
                .additionals
                .push(Record::from_rdata(target, 0, RData::A(address)));
        }
        reply
    }

    /// The datagram hickory's server sends for `reply`, encoded as its UDP
    /// response handle does, and whether it had to drop records itself.
    fn datagram(request: &Request, edns: Option<&Edns>, reply: &Reply) -> (usize, bool) {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(edns.map_or(512, |edns| edns.max_payload()));
        let metadata = Metadata::response_from_request(&request.metadata);
        let written = MessageResponseBuilder::new(&request.queries, edns)
            .build(
                metadata,
                reply.answers.iter(),
                reply.authorities.iter(),
                std::iter::empty(),
                reply.additionals.iter(),
            )
            .destructive_emit(&mut encoder)
            .unwrap();
        (bytes.len(), written.truncation)
    }

    fn udp<'a>(request: &'a Request, edns: Option<&'a Edns>) -> Transport<'a> {
        Transport {
            udp: true,
            queries: &request.queries,
            edns,
            udp_answer_limit: 3,
        }
    }

    /// Node names of different lengths compress differently, so how many
    /// answers fit depends on their order: every order must fit, and
    /// nothing that would still fit may be dropped.
    #[test]
    fn every_order_of_a_large_srv_reply_fits_the_datagram() {
        let request = request(SERVICE, RecordType::SRV, Some(1024));
        let echo = edns(1024);
        let limit = 1024 - UDP_HEADER;
        for seed in 0..400 {
            let mut nodes: Vec<u32> = (1..=60).collect();
            nodes.shuffle(&mut StdRng::seed_from_u64(seed));
            let full = srv_farm(SERVICE, &nodes);
            let mut reply = srv_farm(SERVICE, &nodes);
            assert!(trim(&mut reply, &udp(&request, Some(&echo))));

            let kept = reply.answers.len();
            let (sent, dropped_by_hickory) = datagram(&request, Some(&echo), &reply);
            assert!(
                sent <= limit,
                "order {seed}: {sent} bytes for {kept} answers"
            );
            assert!(!dropped_by_hickory, "order {seed}");
            assert_eq!(reply.additionals.len(), kept, "order {seed}");

            let mut one_more = Reply {
                answers: full.answers[..=kept].to_vec(),
                additionals: full.additionals.clone(),
                ..Reply::default()
            };
            sync_additionals(&mut one_more);
            let (bigger, _) = datagram(&request, Some(&echo), &one_more);
            assert!(bigger > limit, "order {seed}: {} answers fit", kept + 1);
        }
    }

    /// Whatever it skips encoding for must really fit: the bound is never
    /// below the encoded size, even when no name can be compressed.
    #[test]
    fn the_size_bound_never_undercounts() {
        let request = request(SERVICE, RecordType::ANY, Some(4096));
        let echo = edns(4096);
        let transport = udp(&request, Some(&echo));

        let nodes: Vec<u32> = (1..=40).collect();
        let srv = srv_farm(SERVICE, &nodes);
        let mut distinct = Reply::default();
        for n in 0..200u32 {
            // One label each: no suffix is shared, nothing compresses.
            let owner = name(&format!("h{n}."));
            let address = A::new(10, 1, (n / 256) as u8, (n % 256) as u8);
            distinct
                .answers
                .push(Record::from_rdata(owner, 0, RData::A(address)));
        }
        let mut text = Reply::default();
        for n in 0..20 {
            let txt = TXT::new(vec![format!("key{n}=value"), "x".repeat(200)]);
            text.answers
                .push(Record::from_rdata(name(SERVICE), 0, RData::TXT(txt)));
        }
        for reply in [&srv, &distinct, &text] {
            let bound = size_bound(reply, &transport);
            for names in [NameEncoding::Compressed, NameEncoding::Uncompressed] {
                assert!(bound >= encoded_size(reply, &transport, names));
            }
        }
        // With nothing to compress, the bound is exact.
        assert_eq!(
            size_bound(&distinct, &transport),
            encoded_size(&distinct, &transport, NameEncoding::Compressed)
        );
    }

    /// Like Consul, a response to a plain query cut to the answer limit is
    /// sized as if uncompressed, though it is sent compressed.
    #[test]
    fn a_plain_reply_cut_to_the_answer_limit_is_sized_uncompressed() {
        let qname = format!("{}.service.consul.", "long-service-name".repeat(3));
        let request = request(&qname, RecordType::SRV, None);
        let transport = udp(&request, None);
        let nodes: Vec<u32> = (1..=10).collect();

        let mut three = srv_farm(&qname, &nodes[..3]);
        let compressed = encoded_size(&three, &transport, NameEncoding::Compressed);
        let uncompressed = encoded_size(&three, &transport, NameEncoding::Uncompressed);
        let limit = DEFAULT_UDP_SIZE - UDP_HEADER;
        assert!(compressed <= limit && uncompressed > limit);
        // Three answers alone are within the limit: nothing is cut.
        assert!(!trim(&mut three, &transport));

        let mut reply = srv_farm(&qname, &nodes);
        assert!(trim(&mut reply, &transport));
        assert!(reply.answers.len() < 3);
        assert!(encoded_size(&reply, &transport, NameEncoding::Uncompressed) <= limit);
        assert!(datagram(&request, None, &reply).0 <= limit);
    }
}
