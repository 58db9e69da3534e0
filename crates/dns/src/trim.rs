//! Cutting responses down to what the transport carries, by Consul's rules
//! (`trimUDPResponse`, `trimTCPResponse`).

use std::collections::HashSet;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{LowerName, RData, RecordType};

use crate::answer::Reply;

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
    pub(crate) query: &'a Query,
    /// The OPT record the response carries, if the query had EDNS.
    pub(crate) edns: Option<&'a Edns>,
    /// The configured UDP answer limit (already capped at 8).
    pub(crate) udp_answer_limit: usize,
}

/// The encoded size of `reply` as a response to `transport.query`.
fn encoded_size(reply: &Reply, answers: usize, transport: &Transport<'_>) -> usize {
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.add_query(transport.query.clone());
    message.add_answers(reply.answers[..answers].iter().cloned());
    message.add_authorities(reply.authorities.iter().cloned());
    message.add_additionals(reply.additionals.iter().cloned());
    if let Some(edns) = transport.edns {
        message.set_edns(edns.clone());
    }
    message.to_vec().map_or(usize::MAX, |bytes| bytes.len())
}

/// An upper bound on the encoded size, without encoding: names counted
/// uncompressed. Records of a kind it cannot size make it give up.
fn size_bound(reply: &Reply, transport: &Transport<'_>) -> usize {
    let record = |r: &hickory_proto::rr::Record| -> Option<usize> {
        let rdata = match &r.data {
            RData::A(_) => 4,
            RData::AAAA(_) => 16,
            RData::SRV(srv) => 6 + srv.target.len(),
            RData::CNAME(name) => name.0.len(),
            RData::TXT(txt) => txt.txt_data.iter().map(|d| d.len() + 1).sum(),
            _ => return None,
        };
        Some(r.name.len() + 10 + rdata)
    };
    let mut total = 12 + transport.query.name().len() + 4;
    if transport.edns.is_some() {
        // The OPT record; options beyond the basics make it give up.
        total += 11 + 64;
    }
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
    let max_size = if transport.udp {
        let edns_size = transport
            .edns
            .map_or(0, |edns| usize::from(edns.max_payload()));
        let max_size = edns_size.clamp(DEFAULT_UDP_SIZE, MAX_UDP_DATAGRAM);
        // Without (a larger) EDNS, only a few answers are sent at all.
        if max_size == DEFAULT_UDP_SIZE && original > transport.udp_answer_limit {
            reply.answers.truncate(transport.udp_answer_limit.max(1));
            sync_additionals(reply);
        }
        max_size - UDP_HEADER
    } else {
        // More than this many records never fit in 64 KiB.
        let most = if transport.query.query_type() == RecordType::SRV {
            1024
        } else {
            4096
        };
        if original > most {
            reply.answers.truncate(most);
            sync_additionals(reply);
        }
        MAX_TCP_SIZE
    };
    if reply.answers.len() > 1
        && size_bound(reply, transport) > max_size
        && encoded_size(reply, reply.answers.len(), transport) > max_size
    {
        reply.authorities.clear();
        // The most answers that fit (one is sent even if it does not).
        let (mut fits, mut too_many) = (1, reply.answers.len());
        while too_many - fits > 1 {
            let middle = fits + (too_many - fits) / 2;
            let mut candidate = Reply {
                answers: reply.answers[..middle].to_vec(),
                additionals: reply.additionals.clone(),
                ..Reply::default()
            };
            sync_additionals(&mut candidate);
            if encoded_size(&candidate, middle, transport) <= max_size {
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
