//! Reading whole MessagePack values off a byte stream that delivers them in
//! arbitrary pieces, and framing outgoing header/body pairs.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::msgpack::{self, DecodeError, Decoded, Limits, Value};

/// Reading the next value failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The peer closed the connection in the middle of a value.
    #[error("connection closed in the middle of a message")]
    Truncated,
}

/// Reads one value at a time from `R`, keeping what arrived past it.
pub struct ValueReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Where the unread bytes in `buf` begin.
    start: usize,
    limits: Limits,
}

impl<R: AsyncRead + Unpin> ValueReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Self {
        ValueReader {
            inner,
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            limits,
        }
    }

    /// The next value; `None` when the peer closed the connection between
    /// values.
    pub async fn next(&mut self) -> Result<Option<Value>, ReadError> {
        loop {
            if self.start < self.buf.len() {
                match msgpack::decode(&self.buf[self.start..], self.limits)? {
                    Decoded::Value(v, used) => {
                        self.start += used;
                        if self.start == self.buf.len() {
                            self.buf.clear();
                            self.start = 0;
                        }
                        return Ok(Some(v));
                    }
                    Decoded::Incomplete => {}
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }
}

/// A header followed by an optional body, as one write.
pub fn frame(header: &Value, body: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    msgpack::encode(header, &mut out);
    if let Some(body) = body {
        msgpack::encode(body, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn values_split_across_reads() {
        let (mut tx, rx) = tokio::io::duplex(7);
        let a = Value::go_struct(vec![
            ("Command", Value::str("handshake")),
            ("Seq", Value::Uint(1)),
        ]);
        let b = Value::go_struct(vec![("Version", Value::Uint(1))]);
        let bytes = frame(&a, Some(&b));
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                if tx.write_all(chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = ValueReader::new(rx);
        assert_eq!(reader.next().await.ok().flatten(), Some(a));
        assert_eq!(reader.next().await.ok().flatten(), Some(b));
        let _ = writer.await;
        assert!(matches!(reader.next().await, Ok(None)));
    }

    #[tokio::test]
    async fn eof_mid_value_is_truncated() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let _ = tx.write_all(&[0x82, 0xa3]).await;
        drop(tx);
        let mut reader = ValueReader::new(rx);
        assert!(matches!(reader.next().await, Err(ReadError::Truncated)));
    }
}
