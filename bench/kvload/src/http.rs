//! One HTTP/1.1 keep-alive connection per worker, on hyper's low-level
//! client: no pool, no retries, nothing between the worker and its socket.

use std::error::Error;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type BoxError = Box<dyn Error + Send + Sync>;
pub type Conn = SendRequest<Full<Bytes>>;

/// Opens one connection to `endpoint` (`host:port`).
pub async fn connect(endpoint: &str) -> Result<Conn, BoxError> {
    let stream = TcpStream::connect(endpoint).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends one request on `conn` and reads the whole answer.
pub async fn call(
    conn: &mut Conn,
    endpoint: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Reply, BoxError> {
    conn.ready().await?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, endpoint);
    if !body.is_empty() && path.starts_with("/v3") {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let response = conn.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, body })
}
