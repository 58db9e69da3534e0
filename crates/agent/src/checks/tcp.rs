//! TCP checks: passing when a connection can be opened.

use std::time::Duration;

use tokio::time::Instant;

use super::dial::dial;
use super::scheduler::ProbeResult;
use super::CheckStatus;

/// A TCP check (`TCP`): connect, then close at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCheck {
    /// `host:port` to connect to.
    pub address: String,
    pub interval: Duration,
    /// Dial timeout (Consul's default is 10s).
    pub timeout: Duration,
}

impl TcpCheck {
    /// One probe: passing with `TCP connect <addr>: Success`, else critical
    /// with the dial error as Go prints it.
    pub(crate) async fn probe(&self) -> ProbeResult {
        match dial(&self.address, Instant::now() + self.timeout).await {
            Ok(stream) => {
                drop(stream);
                ProbeResult::new(
                    CheckStatus::Passing,
                    format!("TCP connect {}: Success", self.address),
                )
            }
            Err(error) => {
                tracing::warn!(address = %self.address, %error, "check socket connection failed");
                ProbeResult::new(CheckStatus::Critical, error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(address: String) -> TcpCheck {
        TcpCheck {
            address,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn open_port_passes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let result = check(address.clone()).probe().await;
        assert_eq!(result.status, CheckStatus::Passing);
        assert_eq!(result.output, format!("TCP connect {address}: Success"));
    }

    #[tokio::test]
    async fn closed_port_is_critical_with_go_text() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let result = check(address.clone()).probe().await;
        assert_eq!(result.status, CheckStatus::Critical);
        assert_eq!(
            result.output,
            format!("dial tcp {address}: connect: connection refused")
        );
    }
}
