//! Byte layout of segment headers and records (described in the module docs of
//! [`crate::wal`]). Pure functions over byte slices; no IO.

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"PRAETWAL";
/// The only format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
pub(crate) const RECORD_HEADER_LEN: usize = 32;
/// Records start at offsets that are multiples of this.
pub(crate) const ALIGN: usize = 8;
/// The largest payload one record may carry. It bounds what a damaged length
/// field can make recovery read.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// The fixed fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub index: u64,
    pub term: u64,
    /// Every record with a smaller index was durable when this one was
    /// written.
    pub durable: u64,
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// The file ends inside the header or the payload.
    Short,
    /// The length field is larger than [`MAX_PAYLOAD`].
    Length,
    /// The CRC does not match.
    Checksum,
    /// A padding byte after the payload is not zero.
    Padding,
}

impl Invalid {
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::Short => "record runs past the end of the file",
            Invalid::Length => "record length field is out of range",
            Invalid::Checksum => "record checksum mismatch",
            Invalid::Padding => "record padding is not zero",
        }
    }
}

pub(crate) fn encode_segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Returns the segment's base index, or why the header is not valid.
pub(crate) fn decode_segment_header(buf: &[u8]) -> Result<u64, String> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the segment header",
            buf.len()
        ));
    }
    if crc32c::crc32c(&buf[..28]) != u32_at(buf, 28) {
        return Err("segment header checksum mismatch".to_string());
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err("not a praetor log segment (bad magic)".to_string());
    }
    let version = u32_at(buf, 8);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    Ok(u64_at(buf, 16))
}

/// Bytes taken by a record with a payload of `len` bytes, padding included.
pub(crate) fn record_size(len: usize) -> usize {
    RECORD_HEADER_LEN + len.next_multiple_of(ALIGN)
}

fn record_crc(head: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&head[4..RECORD_HEADER_LEN]), payload)
}

/// Appends one record (header, payload, zero padding) to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    index: u64,
    term: u64,
    durable: u64,
    payload: &[u8],
) {
    let start = out.len();
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[8..16].copy_from_slice(&index.to_le_bytes());
    head[16..24].copy_from_slice(&term.to_le_bytes());
    head[24..32].copy_from_slice(&durable.to_le_bytes());
    let crc = record_crc(&head, payload);
    head[0..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out.resize(start + record_size(payload.len()), 0);
}

/// Reads the header fields at the start of `buf` without any check.
/// `buf` must hold at least [`RECORD_HEADER_LEN`] bytes.
pub(crate) fn peek_header(buf: &[u8]) -> RecordHeader {
    RecordHeader {
        len: u32_at(buf, 4),
        index: u64_at(buf, 8),
        term: u64_at(buf, 16),
        durable: u64_at(buf, 24),
    }
}

/// Checks the record at the start of `buf` (which runs to the end of the
/// valid data) and returns its header and total size.
pub(crate) fn parse_record(buf: &[u8]) -> Result<(RecordHeader, usize), Invalid> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(Invalid::Short);
    }
    let header = peek_header(buf);
    let len = header.len as usize;
    if len > MAX_PAYLOAD {
        return Err(Invalid::Length);
    }
    let size = record_size(len);
    if buf.len() < size {
        return Err(Invalid::Short);
    }
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if record_crc(buf, payload) != u32_at(buf, 0) {
        return Err(Invalid::Checksum);
    }
    if buf[RECORD_HEADER_LEN + len..size].iter().any(|b| *b != 0) {
        return Err(Invalid::Padding);
    }
    Ok((header, size))
}

/// The payload of a record that [`parse_record`] accepted.
pub(crate) fn payload(buf: &[u8], header: &RecordHeader) -> Vec<u8> {
    buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + header.len as usize].to_vec()
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_as_documented() {
        let mut out = Vec::new();
        encode_record(&mut out, 0x0102, 0x0304, 0x0101, b"abc");
        assert_eq!(out.len(), 40);
        assert_eq!(&out[4..8], &3u32.to_le_bytes());
        assert_eq!(&out[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&out[16..24], &0x0304u64.to_le_bytes());
        assert_eq!(&out[24..32], &0x0101u64.to_le_bytes());
        assert_eq!(&out[32..35], b"abc");
        assert_eq!(&out[35..40], &[0u8; 5]);
        let mut covered = out[4..32].to_vec();
        covered.extend_from_slice(b"abc");
        assert_eq!(&out[0..4], &crc32c::crc32c(&covered).to_le_bytes());
        let (h, size) = parse_record(&out).unwrap();
        assert_eq!(size, 40);
        assert_eq!(
            (h.index, h.term, h.durable, h.len),
            (0x0102, 0x0304, 0x0101, 3)
        );
    }

    #[test]
    fn every_bit_of_a_record_is_covered() {
        let mut out = Vec::new();
        encode_record(&mut out, 5, 2, 5, b"payload!");
        encode_record(&mut out, 6, 2, 5, b"odd");
        let first = record_size(8);
        assert_eq!(out.len(), first + record_size(3));
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                let at = if byte < first { 0 } else { first };
                assert!(parse_record(&bad[at..]).is_err(), "byte {byte} bit {bit}");
            }
        }
        for cut in 0..first {
            assert_eq!(parse_record(&out[..cut]), Err(Invalid::Short));
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        for byte in 0..SEGMENT_HEADER_LEN {
            let mut bad = h;
            bad[byte] ^= 4;
            assert!(decode_segment_header(&bad).is_err(), "byte {byte}");
        }
    }
}
