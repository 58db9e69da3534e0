//! Opening TCP connections the way Go's `net.Dialer` does, with Go's error
//! texts, because those texts become check output that users compare with
//! what Consul printed.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::output::go_os_error;
use super::tls::{self, Alpn, TlsError};

/// A byte stream a probe speaks HTTP over: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to wrap a connection in TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsTarget<'a> {
    /// The name the certificate must carry.
    pub server_name: &'a str,
    pub skip_verify: bool,
    pub alpn: Alpn,
}

/// Why a connection could not be opened; `Display` is Go's text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Dials `address` and, when `tls` is given, runs the TLS handshake.
pub(crate) async fn open(
    address: &str,
    tls: Option<TlsTarget<'_>>,
    deadline: Instant,
) -> Result<Box<dyn Io>, ConnectError> {
    let stream = dial(address, deadline).await?;
    Ok(match tls {
        None => Box::new(stream),
        Some(target) => Box::new(
            tls::connect(stream, target.server_name, target.skip_verify, target.alpn).await?,
        ),
    })
}

/// Why a dial failed; `Display` is Go's `*net.OpError` text, e.g.
/// `dial tcp 127.0.0.1:1: connect: connection refused`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("dial tcp: address {address}: missing port in address")]
    MissingPort { address: String },
    #[error("dial tcp: lookup {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("dial tcp {address}: connect: {reason}")]
    Connect { address: SocketAddr, reason: String },
    #[error("dial tcp {address}: i/o timeout")]
    Timeout { address: String },
}

/// Connects to `address` (`host:port`, IPv6 hosts in brackets) before
/// `deadline`, trying each resolved address in turn like Go's dialer.
pub(crate) async fn dial(address: &str, deadline: Instant) -> Result<TcpStream, DialError> {
    let host = split_host(address).ok_or_else(|| DialError::MissingPort {
        address: address.to_owned(),
    })?;
    let resolved = match tokio::time::timeout_at(deadline, tokio::net::lookup_host(address)).await {
        Ok(Ok(resolved)) => resolved.collect::<Vec<_>>(),
        Ok(Err(error)) => {
            return Err(DialError::Lookup {
                host: host.to_owned(),
                reason: lookup_reason(&error),
            })
        }
        Err(_) => {
            return Err(DialError::Timeout {
                address: address.to_owned(),
            })
        }
    };
    let mut last_error = DialError::Lookup {
        host: host.to_owned(),
        reason: "no such host".to_owned(),
    };
    for candidate in resolved {
        match tokio::time::timeout_at(deadline, TcpStream::connect(candidate)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => {
                last_error = DialError::Connect {
                    address: candidate,
                    reason: go_os_error(&error),
                }
            }
            Err(_) => {
                return Err(DialError::Timeout {
                    address: candidate.to_string(),
                })
            }
        }
    }
    Err(last_error)
}

/// The host part of `host:port`, or `None` when there is no port.
fn split_host(address: &str) -> Option<&str> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return after.strip_prefix(':').map(|_| host);
    }
    let (host, port) = address.rsplit_once(':')?;
    if host.contains(':') || port.is_empty() {
        return None;
    }
    Some(host)
}

/// The resolver's reason in Go's words where they differ.
fn lookup_reason(error: &io::Error) -> String {
    let text = go_os_error(error);
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text);
    if text.contains("not known") || text.contains("no address associated") {
        "no such host".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn splits_hosts() {
        assert_eq!(split_host("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(split_host("[::1]:80"), Some("::1"));
        assert_eq!(split_host("localhost"), None);
        assert_eq!(split_host("::1"), None);
        assert_eq!(split_host("[::1]"), None);
    }

    #[tokio::test]
    async fn reports_missing_port_like_go() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let error = dial("localhost", deadline)
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("dial tcp: address localhost: missing port in address")
        );
    }
}
