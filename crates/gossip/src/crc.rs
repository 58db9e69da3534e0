//! `hasCrc`: `[12][crc32 IEEE of msg, BE][msg]`. Receivers accept messages
//! with and without it.

use crate::CodecError;

/// Wraps an encoded message with its CRC.
pub fn wrap(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(crate::MessageType::HasCrc as u8);
    out.extend_from_slice(&crc32fast::hash(msg).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Checks a hasCrc body (after the type byte) and returns the inner message.
pub fn unwrap(body: &[u8]) -> Result<&[u8], CodecError> {
    let crc = body.get(..4).ok_or(CodecError::Truncated)?;
    let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let msg = &body[4..];
    let got = crc32fast::hash(msg);
    if got != want {
        return Err(CodecError::CrcMismatch { want, got });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_corruption() {
        let w = wrap(b"\x08hello");
        assert_eq!(w[0], 12);
        assert_eq!(unwrap(&w[1..]).unwrap(), b"\x08hello");
        let mut bad = w.clone();
        bad[7] ^= 1;
        assert!(matches!(
            unwrap(&bad[1..]),
            Err(CodecError::CrcMismatch { .. })
        ));
    }
}
