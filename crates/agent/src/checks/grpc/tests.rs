//! The gRPC runner against a real HTTP/2 server speaking the health protocol.

use std::convert::Infallible;

use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Response;
use tokio::net::TcpListener;

use super::*;

#[test]
fn request_encoding_matches_protobuf() {
    assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
    assert_eq!(
        &encode_request("web")[..],
        &[0, 0, 0, 0, 5, 0x0a, 3, b'w', b'e', b'b']
    );
    let long = "x".repeat(200);
    let encoded = encode_request(&long);
    assert_eq!(&encoded[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
}

#[test]
fn response_decoding_reads_status_and_skips_unknown_fields() {
    assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
    assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Ok(0));
    // field 2 (length-delimited "ab") before field 1 = NOT_SERVING.
    let body = [0, 0, 0, 0, 6, 0x12, 2, b'a', b'b', 0x08, 2];
    assert_eq!(decode_response(&body), Ok(2));
    assert!(decode_response(&[0, 0, 0, 0, 3, 0x08]).is_err());
    assert!(decode_response(&[1, 0, 0, 0, 0]).is_err());
    assert!(decode_response(&[]).is_err());
}

/// Answers Health/Check: service "" and "web" are SERVING, "down" is
/// NOT_SERVING, anything else is NotFound as a Trailers-Only answer.
async fn health(
    request: hyper::Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    assert_eq!(request.uri().path(), HEALTH_CHECK_PATH);
    let body = request.into_body().collect().await.map(|c| c.to_bytes());
    let body = body.unwrap_or_default();
    let service = body
        .get(7..)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let status = match service.as_deref().unwrap_or("") {
        "" | "web" => 1u8,
        "down" => 2,
        _ => {
            let response = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "5")
                .header("grpc-message", "unknown%20service")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap_or_default();
            return Ok(response);
        }
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let message = Full::new(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(message)
        .unwrap_or_default())
}

async fn start_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(health))
                    .await;
            });
        }
    });
    address
}

fn check(target: String) -> GrpcCheck {
    GrpcCheck {
        target,
        use_tls: false,
        tls_skip_verify: false,
        tls_server_name: None,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn serving_is_passing() {
    let server = start_server().await;
    for target in [server.clone(), format!("{server}/web")] {
        let result = check(target.clone()).probe().await;
        assert_eq!(result.status, CheckStatus::Passing);
        assert_eq!(result.output, format!("gRPC check {target}: success"));
    }
}

#[tokio::test]
async fn not_serving_is_critical() {
    let target = format!("{}/down", start_server().await);
    let result = check(target.clone()).probe().await;
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(
        result.output,
        format!("gRPC {target} serving status: NOT_SERVING")
    );
}

#[tokio::test]
async fn grpc_errors_read_like_grpc_go() {
    let target = format!("{}/other", start_server().await);
    let result = check(target).probe().await;
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(
        result.output,
        "rpc error: code = NotFound desc = unknown service"
    );
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let result = check(address.clone()).probe().await;
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(
        result.output,
        format!(
            "rpc error: code = Unavailable desc = connection error: desc = \
             \"transport: Error while dialing: dial tcp {address}: connect: connection refused\""
        )
    );
}
