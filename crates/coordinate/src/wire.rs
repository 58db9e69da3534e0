//! The coordinate on the wire: a msgpack map shaped like Serf's Go struct,
//! `{Adjustment, Error, Height, Vec}` with float64 values, keys sorted. The
//! decoder takes float32 and integers too and skips unknown keys.

use rmp::Marker;

use crate::Coordinate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("coordinate is truncated")]
    Truncated,
    #[error("unexpected msgpack marker {0:#04x} in coordinate")]
    Unexpected(u8),
    #[error("coordinate vector has {0} dimensions; at most 64 are accepted")]
    TooManyDimensions(usize),
}

/// Appends `c` in Serf's encoding.
pub fn encode(c: &Coordinate, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_map_len(out, 4);
    let key = |out: &mut Vec<u8>, k: &str| {
        let _ = rmp::encode::write_str(out, k);
    };
    key(out, "Adjustment");
    let _ = rmp::encode::write_f64(out, c.adjustment);
    key(out, "Error");
    let _ = rmp::encode::write_f64(out, c.error);
    key(out, "Height");
    let _ = rmp::encode::write_f64(out, c.height);
    key(out, "Vec");
    let _ = rmp::encode::write_array_len(out, c.vec.len() as u32);
    for v in &c.vec {
        let _ = rmp::encode::write_f64(out, *v);
    }
}

/// Reads a coordinate from the start of `buf`; returns it and the bytes used.
pub fn decode(buf: &[u8]) -> Result<(Coordinate, usize), WireError> {
    let mut r = Cursor { buf, pos: 0 };
    let n = r.map_len()?;
    let mut c = Coordinate {
        vec: Vec::new(),
        error: 0.0,
        adjustment: 0.0,
        height: 0.0,
    };
    for _ in 0..n {
        let key = r.str()?;
        match key {
            b"Adjustment" => c.adjustment = r.float()?,
            b"Error" => c.error = r.float()?,
            b"Height" => c.height = r.float()?,
            b"Vec" => {
                let len = r.array_len()?;
                if len > 64 {
                    return Err(WireError::TooManyDimensions(len));
                }
                c.vec = (0..len).map(|_| r.float()).collect::<Result<_, _>>()?;
            }
            _ => r.skip()?,
        }
    }
    Ok((c, r.pos))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(WireError::Truncated)?;
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }

    fn map_len(&mut self) -> Result<usize, WireError> {
        let b = self.byte()?;
        match Marker::from_u8(b) {
            Marker::FixMap(n) => Ok(n.into()),
            Marker::Map16 => Ok(self.be(2)? as usize),
            Marker::Map32 => Ok(self.be(4)? as usize),
            _ => Err(WireError::Unexpected(b)),
        }
    }

    fn array_len(&mut self) -> Result<usize, WireError> {
        let b = self.byte()?;
        match Marker::from_u8(b) {
            Marker::FixArray(n) => Ok(n.into()),
            Marker::Array16 => Ok(self.be(2)? as usize),
            Marker::Array32 => Ok(self.be(4)? as usize),
            Marker::Null => Ok(0),
            _ => Err(WireError::Unexpected(b)),
        }
    }

    fn str(&mut self) -> Result<&'a [u8], WireError> {
        let b = self.byte()?;
        let len = match Marker::from_u8(b) {
            Marker::FixStr(n) => n.into(),
            Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
            Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
            Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
            _ => return Err(WireError::Unexpected(b)),
        };
        self.take(len)
    }

    fn float(&mut self) -> Result<f64, WireError> {
        let b = self.byte()?;
        Ok(match Marker::from_u8(b) {
            Marker::F64 => f64::from_bits(self.be(8)?),
            Marker::F32 => f64::from(f32::from_bits(self.be(4)? as u32)),
            Marker::FixPos(n) => n.into(),
            Marker::FixNeg(n) => n.into(),
            Marker::U8 => self.be(1)? as f64,
            Marker::U16 => self.be(2)? as f64,
            Marker::U32 => self.be(4)? as f64,
            Marker::U64 => self.be(8)? as f64,
            Marker::I8 => self.be(1)? as u8 as i8 as f64,
            Marker::I16 => self.be(2)? as u16 as i16 as f64,
            Marker::I32 => self.be(4)? as u32 as i32 as f64,
            Marker::I64 => self.be(8)? as i64 as f64,
            Marker::Null => 0.0,
            _ => return Err(WireError::Unexpected(b)),
        })
    }

    /// Skips one value of any type (bounded depth by the input length).
    fn skip(&mut self) -> Result<(), WireError> {
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let b = self.byte()?;
            let n = match Marker::from_u8(b) {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => n.into(),
                Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
                Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
                Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
                Marker::FixArray(n) => {
                    pending += usize::from(n);
                    0
                }
                Marker::Array16 => {
                    pending += self.be(2)? as usize;
                    0
                }
                Marker::Array32 => {
                    pending += self.be(4)? as usize;
                    0
                }
                Marker::FixMap(n) => {
                    pending += 2 * usize::from(n);
                    0
                }
                Marker::Map16 => {
                    pending += 2 * self.be(2)? as usize;
                    0
                }
                Marker::Map32 => {
                    pending += 2 * self.be(4)? as usize;
                    0
                }
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => self.be(1)? as usize + 1,
                Marker::Ext16 => self.be(2)? as usize + 1,
                Marker::Ext32 => self.be(4)? as usize + 1,
                Marker::Reserved => return Err(WireError::Unexpected(b)),
            };
            if pending > self.buf.len() {
                return Err(WireError::Truncated);
            }
            self.take(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape() {
        let c = Coordinate {
            vec: vec![0.5, -0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-3],
            error: 1.5,
            adjustment: -0.001,
            height: 1e-5,
        };
        let mut buf = Vec::new();
        encode(&c, &mut buf);
        assert_eq!(buf[0], 0x84);
        assert_eq!(&buf[1..12], b"\xaaAdjustment");
        let (back, used) = decode(&buf).unwrap();
        assert_eq!(back, c);
        assert_eq!(used, buf.len());
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err());
        }
    }
}
