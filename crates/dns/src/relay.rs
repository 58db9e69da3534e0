//! DNS on a client agent. A client keeps no catalog, so it hands each query,
//! as the bytes it received, to a server, which answers it with its own
//! [`CatalogDns`]; the client writes the answer back unchanged. Both halves
//! live here: [`answer_raw`] on the server, [`serve_relay`] on the client.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::handler::CatalogDns;

/// How long an idle relayed TCP connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Sends one query (its bytes, who asked, whether over TCP) to a server and
/// returns the answer's bytes, or `None` when no server answered.
pub type Forward = Arc<
    dyn Fn(Vec<u8>, SocketAddr, bool) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>
        + Send
        + Sync,
>;

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

/// SERVFAIL for `query` (no server could answer it); `None` if the bytes
/// are no DNS message at all.
fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.response_code = ResponseCode::ServFail;
    reply.add_queries(query.queries.iter().cloned());
    reply.to_vec().ok()
}

async fn relay(forward: &Forward, query: Vec<u8>, src: SocketAddr, tcp: bool) -> Option<Vec<u8>> {
    match forward(query.clone(), src, tcp).await {
        Some(answer) => Some(answer),
        None => server_failure(&query),
    }
}

/// Serves DNS on `udp` and `tcp` by relaying every query through `forward`
/// until `shutdown` resolves.
pub async fn serve_relay(
    udp: UdpSocket,
    tcp: TcpListener,
    forward: Forward,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let udp = Arc::new(udp);
    let mut buf = vec![0u8; 65535];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            received = udp.recv_from(&mut buf) => {
                let Ok((n, src)) = received else { continue };
                let (udp, forward, query) = (Arc::clone(&udp), Arc::clone(&forward), buf[..n].to_vec());
                tokio::spawn(async move {
                    if let Some(answer) = relay(&forward, query, src, false).await {
                        let _ = udp.send_to(&answer, src).await;
                    }
                });
            }
            accepted = tcp.accept() => {
                let Ok((stream, src)) = accepted else { continue };
                tokio::spawn(relay_tcp(stream, src, Arc::clone(&forward)));
            }
        }
    }
}

/// One TCP connection: length-prefixed queries in, answers out, in order.
async fn relay_tcp(mut stream: TcpStream, src: SocketAddr, forward: Forward) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(answer) = relay(&forward, query, src, true).await else {
            return;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).await.is_err()
            || stream.write_all(&answer).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(4242, MessageType::Query, hickory_proto::op::OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    #[test]
    fn no_server_is_a_server_failure_for_the_same_question() {
        let failed =
            Message::from_vec(&server_failure(&query("web.service.consul.")).unwrap()).unwrap();
        assert_eq!(failed.metadata.id, 4242);
        assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(failed.queries.len(), 1);
        assert!(server_failure(b"\x01\x02").is_none());
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
