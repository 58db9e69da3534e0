//! A server's answer to a DNS query relayed as raw bytes (`/rpc/dns`), with
//! the server's own [`CatalogDns`]. Agents of this version no longer relay:
//! a client answers with its own settings, reading the catalog through a
//! server ([`Catalog`](crate::Catalog)); servers keep answering relayed
//! queries for clients of earlier versions during a rolling upgrade.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::handler::CatalogDns;

/// Keeps the encoded response instead of sending it anywhere.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max_size: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(self.max_size);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.out.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

/// Answers the query in `raw` as `handler` answers one that arrived from
/// `src` (over TCP or UDP, which decides truncation). `None` for bytes that
/// are no DNS query.
pub async fn answer_raw(
    handler: &CatalogDns,
    raw: Vec<u8>,
    src: SocketAddr,
    tcp: bool,
) -> Option<Vec<u8>> {
    let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
    let request = Request::from_bytes(raw, src, protocol).ok()?;
    let max_size = match (tcp, &request.edns) {
        (true, _) => u16::MAX,
        (false, Some(edns)) => edns.max_payload().max(512),
        (false, None) => 512,
    };
    let capture = Capture {
        out: Arc::new(Mutex::new(None)),
        max_size,
    };
    handler
        .handle_request::<_, hickory_server::net::runtime::TokioTime>(&request, capture.clone())
        .await;
    let answer = capture
        .out
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(4242, MessageType::Query, hickory_proto::op::OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn a_relayed_query_is_answered_from_the_catalog() {
        let store = Arc::new(state::Store::new());
        let handler = CatalogDns::new(crate::snapshots_of(store), crate::DnsConfig::default());
        let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let answer = answer_raw(&handler, query("nosuch.node.consul."), src, false)
            .await
            .expect("an answer");
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.id, 4242);
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer_raw(&handler, b"junk".to_vec(), src, false)
            .await
            .is_none());
    }
}
