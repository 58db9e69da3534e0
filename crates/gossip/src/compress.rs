//! `compress` messages: `[9]` + msgpack `{Algo: 0, Buf}`, where `Buf` is Go
//! `compress/lzw` output (LSB bit order, literal width 8, a clear code first
//! and an end code last).

use weezl::{decode::Decoder, encode::Encoder, BitOrder, LzwStatus};

use crate::message::Compress;
use crate::CodecError;

/// `lzwAlgo`, the only algorithm memberlist defines.
pub const LZW_ALGO: u8 = 0;

/// LZW-compresses `data` as Go's `lzw.NewWriter(w, lzw.LSB, 8)` does.
pub fn lzw_compress(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    Encoder::new(BitOrder::Lsb, 8)
        .encode(data)
        .map_err(|e| CodecError::Lzw(e.to_string()))
}

/// Decompresses Go LZW data, failing if the output would exceed `limit`
/// bytes or the end code is missing.
pub fn lzw_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut dec = Decoder::new(BitOrder::Lsb, 8);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut inp = data;
    loop {
        let r = dec.decode_bytes(inp, &mut chunk);
        inp = inp.get(r.consumed_in..).unwrap_or(&[]);
        let produced = chunk.get(..r.consumed_out).unwrap_or(&[]);
        if out.len() + produced.len() > limit {
            return Err(CodecError::TooLarge);
        }
        out.extend_from_slice(produced);
        match r.status {
            Ok(LzwStatus::Done) => return Ok(out),
            Ok(LzwStatus::NoProgress) => return Err(CodecError::Truncated),
            Ok(LzwStatus::Ok) => {
                if r.consumed_in == 0 && r.consumed_out == 0 && inp.is_empty() {
                    return Err(CodecError::Truncated);
                }
            }
            Err(e) => return Err(CodecError::Lzw(e.to_string())),
        }
    }
}

/// Wraps an encoded message in a compress message.
pub fn compress(msg: &[u8]) -> Result<Compress, CodecError> {
    Ok(Compress {
        algo: LZW_ALGO,
        buf: lzw_compress(msg)?,
    })
}

/// The encoded message inside a compress message (at most `limit` bytes).
pub fn decompress(c: &Compress, limit: usize) -> Result<Vec<u8>, CodecError> {
    if c.algo != LZW_ALGO {
        return Err(CodecError::UnknownCompression(c.algo));
    }
    lzw_decompress(&c.buf, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_small_and_large() {
        let small = b"hello hello hello".to_vec();
        let c = compress(&small).unwrap();
        assert_eq!(decompress(&c, 1 << 20).unwrap(), small);
        // Large enough to fill the 4096-entry table several times.
        let big: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let c = compress(&big).unwrap();
        assert_eq!(decompress(&c, 1 << 20).unwrap(), big);
    }

    #[test]
    fn limit_and_garbage() {
        let c = compress(&[0u8; 10_000]).unwrap();
        assert!(matches!(decompress(&c, 100), Err(CodecError::TooLarge)));
        assert!(decompress(
            &Compress {
                algo: 0,
                buf: vec![0xff; 8]
            },
            1 << 20
        )
        .is_err());
        assert!(matches!(
            decompress(
                &Compress {
                    algo: 1,
                    buf: vec![]
                },
                10
            ),
            Err(CodecError::UnknownCompression(1))
        ));
        // Missing end code.
        let mut c = compress(b"abcdef").unwrap();
        c.buf.truncate(2);
        assert!(decompress(&c, 1 << 20).is_err());
    }
}
