//! Forwarding names outside the domain to the configured recursors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Asks each recursor in turn, over the transport the client used, and
/// returns the first answer that is a success or NXDOMAIN. `None` when
/// every recursor failed or timed out.
pub(crate) async fn forward(
    request: &[u8],
    id: u16,
    recursors: &[SocketAddr],
    wait: Duration,
    tcp: bool,
) -> Option<Message> {
    for &recursor in recursors {
        let exchanged = if tcp {
            timeout(wait, exchange_tcp(request, recursor)).await
        } else {
            timeout(wait, exchange_udp(request, id, recursor)).await
        };
        let bytes = match exchanged {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                tracing::debug!(%recursor, %error, "recursor failed");
                continue;
            }
            Err(_) => {
                tracing::debug!(%recursor, "recursor timed out");
                continue;
            }
        };
        match Message::from_vec(&bytes) {
            Ok(message)
                if message.metadata.id == id
                    && matches!(
                        message.metadata.response_code,
                        ResponseCode::NoError | ResponseCode::NXDomain
                    ) =>
            {
                return Some(message)
            }
            Ok(message) => {
                tracing::debug!(%recursor, rcode = %message.metadata.response_code, "recursor answered with an error");
            }
            Err(error) => tracing::debug!(%recursor, %error, "malformed answer from recursor"),
        }
    }
    None
}

async fn exchange_udp(request: &[u8], id: u16, recursor: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if recursor.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(recursor).await?;
    socket.send(request).await?;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buffer).await?;
        // Skip anything that is not the answer to this question.
        if len >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

async fn exchange_tcp(request: &[u8], recursor: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(recursor).await?;
    let len = u16::try_from(request.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "request too long"))?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut buffer = vec![0u8; len];
    stream.read_exact(&mut buffer).await?;
    Ok(buffer)
}
