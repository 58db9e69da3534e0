//! Compound messages: `[7][n: u8][n x len: u16 BE][parts...]`.

use crate::CodecError;

/// The most parts memberlist puts in one compound message.
pub const MAX_PARTS: usize = 127;

/// Frames `parts` (each a complete encoded message) as one compound message.
/// At most [`MAX_PARTS`] parts, each at most 65535 bytes.
pub fn make(parts: &[Vec<u8>]) -> Result<Vec<u8>, CodecError> {
    if parts.len() > MAX_PARTS {
        return Err(CodecError::TooManyParts(parts.len()));
    }
    make_unchecked(parts)
}

/// Frames any count that fits the u8 header (used when re-encoding a decoded
/// compound, which may legally hold up to 255 parts).
pub(crate) fn make_unchecked(parts: &[Vec<u8>]) -> Result<Vec<u8>, CodecError> {
    let n = u8::try_from(parts.len()).map_err(|_| CodecError::TooManyParts(parts.len()))?;
    let total: usize = parts.iter().map(|p| p.len() + 2).sum();
    let mut out = Vec::with_capacity(2 + total);
    out.push(crate::MessageType::Compound as u8);
    out.push(n);
    for p in parts {
        let l = u16::try_from(p.len()).map_err(|_| CodecError::TooLarge)?;
        out.extend_from_slice(&l.to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Frames any number of parts into as many compound messages as needed
/// (a single part is sent bare, as memberlist does).
pub fn make_many(parts: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CodecError> {
    if parts.len() == 1 {
        return Ok(parts.to_vec());
    }
    parts.chunks(MAX_PARTS).map(make).collect()
}

/// Splits a compound body (after the type byte) into its parts. Returns the
/// complete parts and how many announced parts were cut off.
pub fn split(body: &[u8]) -> Result<(Vec<&[u8]>, usize), CodecError> {
    let (&n, rest) = body.split_first().ok_or(CodecError::Truncated)?;
    let n = usize::from(n);
    let lens = rest.get(..n * 2).ok_or(CodecError::Truncated)?;
    let mut data = &rest[n * 2..];
    let mut parts = Vec::with_capacity(n);
    for (i, l) in lens.chunks_exact(2).enumerate() {
        let l = usize::from(u16::from_be_bytes([l[0], l[1]]));
        if data.len() < l {
            return Ok((parts, n - i));
        }
        let (p, tail) = data.split_at(l);
        parts.push(p);
        data = tail;
    }
    Ok((parts, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_split_round_trip() {
        let parts = vec![vec![1u8, 2, 3], vec![], vec![9u8; 300]];
        let c = make(&parts).unwrap();
        assert_eq!(&c[..2], &[7, 3]);
        let (got, trunc) = split(&c[1..]).unwrap();
        assert_eq!(trunc, 0);
        assert_eq!(got, parts.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
    }

    #[test]
    fn limits() {
        assert!(matches!(
            make(&vec![vec![0u8]; 128]),
            Err(CodecError::TooManyParts(128))
        ));
        assert!(make(&[vec![0u8; 70_000]]).is_err());
        let many = make_many(&vec![vec![0u8]; 300]).unwrap();
        assert_eq!(many.len(), 3);
        assert_eq!(usize::from(many[2][1]), 300 - 254);
    }

    #[test]
    fn truncated_tail_is_counted() {
        // 2 parts of 3 bytes, only 4 data bytes present.
        let (parts, trunc) = split(&[2, 0, 3, 0, 3, 1, 2, 3, 4]).unwrap();
        assert_eq!(parts, vec![&[1u8, 2, 3][..]]);
        assert_eq!(trunc, 1);
    }
}
