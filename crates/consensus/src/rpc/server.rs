//! The answering side of the server port: accepts HTTP/2 connections and
//! hands each decoded message to the [`Cluster`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;

use super::wire::{ApiReply, ApiRequest, DcRead, DcReadReply, DnsRead, DnsRows};
use super::{paths, split_snapshot_body, CONTENT_TYPE, MAX_BODY, MAX_SNAPSHOT};
use crate::cluster::Cluster;

type Answer = Response<Full<Bytes>>;

/// Answers what client agents forward: HTTP API calls (`/rpc/api`), the
/// catalog reads of their DNS interface (`/rpc/dns-read`); and what
/// servers of other datacenters read (`/rpc/dc-read`). The agent layer
/// above plugs its API and its catalog in here.
pub trait ForwardedCalls: Send + Sync + 'static {
    fn api(&self, request: ApiRequest) -> Pin<Box<dyn Future<Output = ApiReply> + Send>>;
    fn dc_read(&self, read: DcRead) -> Pin<Box<dyn Future<Output = DcReadReply> + Send>>;
    fn dns_read(&self, read: DnsRead) -> Pin<Box<dyn Future<Output = DnsRows> + Send>>;
}

/// Serves the server port on `listener` until `stop` resolves, without
/// answering forwarded API calls.
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>, stop: impl Future<Output = ()>) {
    serve_with_api(listener, cluster, None, stop).await
}

/// Serves the server port on `listener` until `stop` resolves; `api`
/// answers the client agents' forwarded API calls.
pub async fn serve_with_api(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    api: Option<Arc<dyn ForwardedCalls>>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    // Connections end with the port: a stopped server answers no one.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!(%error, "server port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let cluster = Arc::clone(&cluster);
        let api = api.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let cluster = Arc::clone(&cluster);
                let api = api.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        route(&cluster, api.as_deref(), request).await,
                    )
                }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(1024)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20);
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "server port: connection ended");
            }
        });
    }
}

async fn route(
    cluster: &Cluster,
    api: Option<&dyn ForwardedCalls>,
    request: Request<Incoming>,
) -> Answer {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    let path = request.uri().path().to_string();
    let limit = if path == paths::SNAPSHOT {
        MAX_SNAPSHOT
    } else {
        MAX_BODY
    };
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return text(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    match path.as_str() {
        paths::APPEND => answer(&body, |m| cluster.on_append(m)).await,
        paths::VOTE => answer(&body, |m| cluster.on_vote(m, false)).await,
        paths::PRE_VOTE => answer(&body, |m| cluster.on_vote(m, true)).await,
        paths::TRANSFER => answer(&body, |m| cluster.on_transfer(m)).await,
        paths::WRITE => answer(&body, |m| cluster.on_write(m)).await,
        paths::READ_INDEX => answer(&body, |m| cluster.on_read_index(m)).await,
        paths::HELLO => answer(&body, |m| cluster.on_hello(m)).await,
        paths::MEMBERSHIP => answer(&body, |m| cluster.on_membership(m)).await,
        paths::CONFIGURATION => answer(&body, |()| cluster.on_configuration()).await,
        paths::CLIENT_WRITE => answer(&body, |m| cluster.on_client_write(m)).await,
        paths::NODE_STATE => answer(&body, |m| cluster.on_node_state(m)).await,
        paths::API => match api {
            Some(api) => answer(&body, |m| async move { Ok(api.api(m).await) }).await,
            None => text(StatusCode::NOT_FOUND, "this server answers no API calls"),
        },
        paths::DC_READ => match api {
            Some(api) => answer(&body, |m| async move { Ok(api.dc_read(m).await) }).await,
            None => text(
                StatusCode::NOT_FOUND,
                "this server answers no datacenter reads",
            ),
        },
        paths::DNS_READ => match api {
            Some(api) => answer(&body, |m| async move { Ok(api.dns_read(m).await) }).await,
            None => text(StatusCode::NOT_FOUND, "this server answers no DNS reads"),
        },
        paths::SNAPSHOT => match split_snapshot_body(&body) {
            Ok((head, state)) => match cluster.on_snapshot(head, state.to_vec()).await {
                Ok(vote) => msgpack(&vote),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
            },
            Err(error) => text(StatusCode::BAD_REQUEST, &error.to_string()),
        },
        _ => text(StatusCode::NOT_FOUND, "no such server RPC"),
    }
}

/// Decodes the body as `Q`, runs `handle`, encodes its answer. A handler's
/// `Err` is a server that cannot answer now (stopping, storage failure).
async fn answer<Q, A, F, Fut>(body: &[u8], handle: F) -> Answer
where
    Q: DeserializeOwned,
    A: Serialize,
    F: FnOnce(Q) -> Fut,
    Fut: Future<Output = Result<A, String>>,
{
    let message = match rmp_serde::from_slice(body) {
        Ok(message) => message,
        Err(error) => return text(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    match handle(message).await {
        Ok(reply) => msgpack(&reply),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
    }
}

fn msgpack<A: Serialize>(reply: &A) -> Answer {
    match rmp_serde::to_vec_named(reply) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

fn text(status: StatusCode, reason: &str) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(reason.to_string())));
    *response.status_mut() = status;
    response
}
