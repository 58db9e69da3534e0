//! Go-compatible msgpack, as hashicorp/go-msgpack 0.5.5 writes it.
//!
//! Writer: strings and byte slices both use the str family (fixstr, str16,
//! str32), never str8 nor bin; a nil/empty byte slice is written as nil;
//! unsigned and non-negative signed integers take the smallest unsigned form.
//! Reader: lenient, accepts str8 and bin for strings and bytes, nil for
//! empty, any integer width that fits, and skips values it does not know.

use rmp::Marker;

use crate::CodecError;

/// Deepest nesting `skip_value` follows before giving up.
const MAX_SKIP_DEPTH: usize = 32;

/// Appends Go-shaped msgpack values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer that appends to `buf`.
    pub fn new(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    /// The bytes written so far.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// A map header (fixmap, map16, map32).
    pub fn map_len(&mut self, len: u32) {
        // Writing to a Vec cannot fail.
        let _ = rmp::encode::write_map_len(&mut self.buf, len);
    }

    /// An array header (fixarray, array16, array32).
    pub fn array_len(&mut self, len: u32) {
        let _ = rmp::encode::write_array_len(&mut self.buf, len);
    }

    /// A str-family header as Go writes it: no str8.
    fn str_len(&mut self, len: usize) {
        if len < 32 {
            // fixstr: 0xa0 | len; len < 32 so the cast is exact.
            self.buf.push(Marker::FixStr(len as u8).to_u8());
        } else if let Ok(l) = u16::try_from(len) {
            self.buf.push(Marker::Str16.to_u8());
            self.buf.extend_from_slice(&l.to_be_bytes());
        } else {
            // Longer than u32::MAX cannot occur in a datagram or a 20 MiB
            // stream; saturate rather than wrap.
            let l = u32::try_from(len).unwrap_or(u32::MAX);
            self.buf.push(Marker::Str32.to_u8());
            self.buf.extend_from_slice(&l.to_be_bytes());
        }
    }

    /// A Go `string`.
    pub fn str(&mut self, s: &str) {
        self.str_len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A Go `[]byte`: nil when empty, else the str family.
    pub fn bytes(&mut self, b: &[u8]) {
        if b.is_empty() {
            self.nil();
        } else {
            self.str_len(b.len());
            self.buf.extend_from_slice(b);
        }
    }

    /// nil.
    pub fn nil(&mut self) {
        self.buf.push(Marker::Null.to_u8());
    }

    /// A Go unsigned integer (any width), smallest form.
    pub fn uint(&mut self, v: u64) {
        let _ = rmp::encode::write_uint(&mut self.buf, v);
    }

    /// A Go signed integer: non-negative values take the unsigned forms.
    pub fn int(&mut self, v: i64) {
        match u64::try_from(v) {
            Ok(u) => self.uint(u),
            Err(_) => {
                let _ = rmp::encode::write_sint(&mut self.buf, v);
            }
        }
    }

    /// A bool.
    pub fn bool(&mut self, v: bool) {
        let _ = rmp::encode::write_bool(&mut self.buf, v);
    }

    /// A map key (a Go struct field name).
    pub fn key(&mut self, k: &str) {
        self.str(k);
    }
}

/// Reads msgpack values from a byte slice, leniently.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn be16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn be32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn be64(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn marker(&mut self) -> Result<Marker, CodecError> {
        Ok(Marker::from_u8(self.u8()?))
    }

    fn peek_marker(&self) -> Result<Marker, CodecError> {
        self.buf
            .get(self.pos)
            .map(|b| Marker::from_u8(*b))
            .ok_or(CodecError::Truncated)
    }

    fn unexpected(expected: &'static str, m: Marker) -> CodecError {
        CodecError::UnexpectedType {
            expected,
            found: m.to_u8(),
        }
    }

    /// A map header; returns the number of pairs (nil, Go's nil map, is 0).
    pub fn map_len(&mut self) -> Result<u32, CodecError> {
        match self.marker()? {
            Marker::Null => Ok(0),
            Marker::FixMap(n) => Ok(u32::from(n)),
            Marker::Map16 => Ok(u32::from(self.be16()?)),
            Marker::Map32 => self.be32(),
            m => Err(Self::unexpected("map", m)),
        }
    }

    /// An array header; returns the number of elements (nil is 0).
    pub fn array_len(&mut self) -> Result<u32, CodecError> {
        match self.marker()? {
            Marker::Null => Ok(0),
            Marker::FixArray(n) => Ok(u32::from(n)),
            Marker::Array16 => Ok(u32::from(self.be16()?)),
            Marker::Array32 => self.be32(),
            m => Err(Self::unexpected("array", m)),
        }
    }

    /// Raw bytes of a str or bin value; nil reads as empty.
    pub fn raw(&mut self) -> Result<&'a [u8], CodecError> {
        let len = match self.marker()? {
            Marker::Null => return Ok(&[]),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.be16()?),
            Marker::Str32 | Marker::Bin32 => self.be32()? as usize,
            m => return Err(Self::unexpected("str or bin", m)),
        };
        self.take(len)
    }

    /// A Go `string` (must be UTF-8).
    pub fn str(&mut self) -> Result<String, CodecError> {
        let b = self.raw()?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::InvalidUtf8)
    }

    /// A Go `[]byte`. Also accepts an array of small integers, which is how
    /// other encoders write `[]uint8`.
    pub fn bytes(&mut self) -> Result<Vec<u8>, CodecError> {
        if let Marker::FixArray(_) | Marker::Array16 | Marker::Array32 = self.peek_marker()? {
            let n = self.array_len()?;
            let mut out = Vec::with_capacity((n as usize).min(self.rest().len()));
            for _ in 0..n {
                out.push(self.uint_as::<u8>()?);
            }
            return Ok(out);
        }
        Ok(self.raw()?.to_vec())
    }

    /// Any integer value as i128 (covers u64 and i64).
    fn integer(&mut self) -> Result<i128, CodecError> {
        Ok(match self.marker()? {
            Marker::FixPos(n) => i128::from(n),
            Marker::FixNeg(n) => i128::from(n),
            Marker::U8 => i128::from(self.u8()?),
            Marker::U16 => i128::from(self.be16()?),
            Marker::U32 => i128::from(self.be32()?),
            Marker::U64 => i128::from(self.be64()?),
            Marker::I8 => i128::from(self.u8()? as i8),
            Marker::I16 => i128::from(self.be16()? as i16),
            Marker::I32 => i128::from(self.be32()? as i32),
            Marker::I64 => i128::from(self.be64()? as i64),
            Marker::Null => 0,
            m => return Err(Self::unexpected("integer", m)),
        })
    }

    /// An integer that must fit in `T`.
    pub fn uint_as<T: TryFrom<i128>>(&mut self) -> Result<T, CodecError> {
        let v = self.integer()?;
        T::try_from(v).map_err(|_| CodecError::IntOutOfRange)
    }

    /// A bool (nil reads as false).
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False | Marker::Null => Ok(false),
            m => Err(Self::unexpected("bool", m)),
        }
    }

    /// Skips one value of any type.
    pub fn skip_value(&mut self) -> Result<(), CodecError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(CodecError::TooDeep);
        }
        let m = self.marker()?;
        let skip = match m {
            Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
                0
            }
            Marker::U8 | Marker::I8 => 1,
            Marker::U16 | Marker::I16 => 2,
            Marker::U32 | Marker::I32 | Marker::F32 => 4,
            Marker::U64 | Marker::I64 | Marker::F64 => 8,
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.be16()?),
            Marker::Str32 | Marker::Bin32 => self.be32()? as usize,
            Marker::FixExt1 => 2,
            Marker::FixExt2 => 3,
            Marker::FixExt4 => 5,
            Marker::FixExt8 => 9,
            Marker::FixExt16 => 17,
            Marker::Ext8 => usize::from(self.u8()?) + 1,
            Marker::Ext16 => usize::from(self.be16()?) + 1,
            Marker::Ext32 => (self.be32()? as usize).saturating_add(1),
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                self.pos -= 1;
                let n = self.array_len()?;
                for _ in 0..n {
                    self.skip_depth(depth + 1)?;
                }
                0
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                self.pos -= 1;
                let n = self.map_len()?;
                for _ in 0..n {
                    self.skip_depth(depth + 1)?;
                    self.skip_depth(depth + 1)?;
                }
                0
            }
            Marker::Reserved => return Err(Self::unexpected("a msgpack value", m)),
        };
        self.take(skip)?;
        Ok(())
    }
}

/// Walks a map shaped like a Go struct, handing each key to `f`, which must
/// consume exactly one value (unknown keys: `Reader::skip_value`).
pub fn fields<'a>(
    r: &mut Reader<'a>,
    mut f: impl FnMut(&[u8], &mut Reader<'a>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let n = r.map_len()?;
    for _ in 0..n {
        let k = r.raw()?;
        f(k, r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_never_use_str8() {
        let mut w = Writer::default();
        w.str(&"x".repeat(40));
        let b = w.into_inner();
        assert_eq!(&b[..3], &[0xda, 0x00, 40]);
    }

    #[test]
    fn empty_bytes_are_nil_and_empty_string_is_fixstr() {
        let mut w = Writer::default();
        w.bytes(&[]);
        w.str("");
        assert_eq!(w.into_inner(), vec![0xc0, 0xa0]);
    }

    #[test]
    fn reader_accepts_str8_and_bin() {
        let mut r = Reader::new(&[0xd9, 2, b'h', b'i', 0xc4, 1, 7]);
        assert_eq!(r.str().unwrap(), "hi");
        assert_eq!(r.bytes().unwrap(), vec![7]);
    }

    #[test]
    fn ints_take_go_shapes() {
        let mut w = Writer::default();
        w.int(200);
        w.int(-1);
        w.uint(7946);
        assert_eq!(w.into_inner(), vec![0xcc, 200, 0xff, 0xcd, 0x1f, 0x0a]);
    }

    #[test]
    fn skip_nested() {
        // {"a": [1, {"b": nil}]} then 5
        let buf = [0x81, 0xa1, b'a', 0x92, 0x01, 0x81, 0xa1, b'b', 0xc0, 0x05];
        let mut r = Reader::new(&buf);
        r.skip_value().unwrap();
        assert_eq!(r.uint_as::<u8>().unwrap(), 5);
    }
}
