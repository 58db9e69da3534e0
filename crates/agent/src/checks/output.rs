//! Bounding what a check reports: Consul caps every output at
//! `OutputMaxSize` bytes, but keeps a different end depending on the source.

use std::collections::VecDeque;
use std::io;

/// Keeps the last `capacity` bytes written and counts everything, like the
/// `armon/circbuf` buffer Consul reads HTTP bodies and script output into:
/// the tail of a long log is where the error usually is.
#[derive(Debug)]
pub(crate) struct TailBuffer {
    capacity: usize,
    bytes: VecDeque<u8>,
    total_written: u64,
}

impl TailBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        TailBuffer {
            capacity,
            bytes: VecDeque::with_capacity(capacity.min(64 * 1024)),
            total_written: 0,
        }
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        self.total_written += data.len() as u64;
        let keep = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + keep.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(keep);
    }

    /// Whether more was written than kept.
    pub(crate) fn truncated(&self) -> bool {
        self.total_written > self.bytes.len() as u64
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn total_written(&self) -> u64 {
        self.total_written
    }

    /// The kept bytes as text; invalid UTF-8 (a cut in the middle of a
    /// character, or binary output) becomes U+FFFD rather than an error.
    pub(crate) fn to_text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let mut joined = Vec::with_capacity(self.bytes.len());
        joined.extend_from_slice(front);
        joined.extend_from_slice(back);
        String::from_utf8_lossy(&joined).into_owned()
    }

    /// Script output as Consul reports it: the tail, prefixed with
    /// `Captured <kept> of <total> bytes\n...\n` when something was dropped.
    pub(crate) fn to_script_output(&self) -> String {
        if self.truncated() {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                self.capacity(),
                self.total_written(),
                self.to_text()
            )
        } else {
            self.to_text()
        }
    }
}

/// A TTL check's output as Consul stores it: the HEAD of the text, then
/// ` ... (captured <max> of <total> bytes)` (unlike script output, which
/// keeps the tail).
pub(crate) fn truncate_ttl_output(output: String, max: usize) -> String {
    if output.len() <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {} of {} bytes)",
        &output[..cut],
        max,
        output.len()
    )
}

/// An OS error as Go prints it: `connection refused`, not Rust's
/// `Connection refused (os error 111)`, so outputs read like Consul's.
pub(crate) fn go_os_error(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_last_bytes() {
        let mut buffer = TailBuffer::new(4);
        buffer.write(b"ab");
        assert_eq!(buffer.to_script_output(), "ab");
        buffer.write(b"cdef");
        assert_eq!(buffer.to_text(), "cdef");
        buffer.write(b"g");
        assert_eq!(buffer.to_text(), "defg");
        buffer.write(b"0123456789");
        assert_eq!(buffer.to_text(), "6789");
        assert_eq!(
            buffer.to_script_output(),
            "Captured 4 of 17 bytes\n...\n6789"
        );
    }

    #[test]
    fn ttl_output_keeps_the_head() {
        assert_eq!(truncate_ttl_output("short".into(), 10), "short");
        assert_eq!(
            truncate_ttl_output("0123456789".into(), 4),
            "0123 ... (captured 4 of 10 bytes)"
        );
    }

    #[test]
    fn os_errors_read_like_go() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let from_os = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(go_os_error(&from_os), "connection refused");
        assert!(go_os_error(&refused).starts_with("connection refused"));
    }
}
