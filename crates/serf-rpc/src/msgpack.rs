//! MessagePack as the Serf agent and its Go client write it.
//!
//! Both ends of Serf's RPC use hashicorp/go-msgpack with `WriteExt` set,
//! which fixes these encoding rules (all checked by the tests below):
//!
//! * integers take the shortest form; a non-negative signed value is written
//!   with the unsigned markers (`0xcc`..`0xcf`), a negative one with the
//!   signed markers or a negative fixint;
//! * Go `string`s use the str family including `str8` (`0xd9`), Go `[]byte`
//!   (and `net.IP`) use the bin family (`0xc4`..`0xc6`);
//! * a nil slice or map is `nil` (`0xc0`), an empty non-nil one is an empty
//!   container;
//! * a struct is a map whose keys are the field names in byte order (the
//!   encoder sorts them), every field present;
//! * `float64` is always `0xcb`.
//!
//! Decoding is lenient the way the Go decoder is: a string may arrive as str
//! or bin and bytes as bin or str, any integer width fits any integer field
//! whose range holds it, and unknown map keys are skipped.
//!
//! [`decode`] works on a prefix of a byte stream: it says whether a whole
//! value is there yet, so a reader can keep appending socket reads until one
//! is.

use std::collections::BTreeMap;

use rmp::Marker;

/// One MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    /// Written with Go's signed-integer rules: non-negative values use the
    /// unsigned forms.
    Int(i64),
    Uint(u64),
    F32(f32),
    F64(f64),
    /// The str family. Invalid UTF-8 from the wire is replaced, as the Go
    /// side would only ever have sent text here.
    Str(String),
    /// The bin family.
    Bin(Vec<u8>),
    Array(Vec<Value>),
    /// Entries in wire order.
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Go `[]byte`: `nil` when empty (what a Go nil slice encodes to).
    pub fn bytes_or_nil(b: &[u8]) -> Value {
        if b.is_empty() {
            Value::Nil
        } else {
            Value::Bin(b.to_vec())
        }
    }

    /// Go `[]string`: `nil` when empty.
    pub fn strings_or_nil(items: &[String]) -> Value {
        if items.is_empty() {
            Value::Nil
        } else {
            Value::Array(items.iter().map(|s| Value::str(s.as_str())).collect())
        }
    }

    /// Go `map[string]string`, keys in byte order (Go's own order is random;
    /// a fixed one makes output reproducible).
    pub fn string_map(map: &BTreeMap<String, String>) -> Value {
        Value::Map(
            map.iter()
                .map(|(k, v)| (Value::str(k.as_str()), Value::str(v.as_str())))
                .collect(),
        )
    }

    /// Go `map[string]int`.
    pub fn int_map(map: &BTreeMap<String, i64>) -> Value {
        Value::Map(
            map.iter()
                .map(|(k, v)| (Value::str(k.as_str()), Value::Int(*v)))
                .collect(),
        )
    }

    /// A Go struct: a map of its fields, keys sorted the way go-msgpack
    /// sorts field names.
    pub fn go_struct(mut fields: Vec<(&'static str, Value)>) -> Value {
        fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Value::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Value::str(k), v))
                .collect(),
        )
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Text from a str or a bin value.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Bin(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Bytes from a bin or a str value.
    pub fn as_byte_slice(&self) -> Option<&[u8]> {
        match self {
            Value::Bin(b) => Some(b),
            Value::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(u) => Some(u),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Uint(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(f) => Some(f),
            Value::F32(f) => Some(f64::from(f)),
            Value::Int(i) => Some(i as f64),
            Value::Uint(u) => Some(u as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The entries of a map, or `None` for anything else.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under a string key of a map (first match).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.iter().find_map(|(k, v)| match k {
            Value::Str(s) if s == key => Some(v),
            Value::Bin(b) if b.as_slice() == key.as_bytes() => Some(v),
            _ => None,
        })
    }
}

/// Appends the encoding of `value` to `out`, with go-msgpack's rules.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(i) => encode_int(*i, out),
        Value::Uint(u) => encode_uint(*u, out),
        Value::F32(f) => {
            out.push(0xca);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            let len = s.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else {
                length(len, [0xd9, 0xda, 0xdb], out);
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            length(b.len(), [0xc4, 0xc5, 0xc6], out);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            container(items.len(), 0x90, [0xdc, 0xdd], out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            container(entries.len(), 0x80, [0xde, 0xdf], out);
            for (k, v) in entries {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Ext(tag, data) => {
            let fixed = match data.len() {
                1 => Some(0xd4),
                2 => Some(0xd5),
                4 => Some(0xd6),
                8 => Some(0xd7),
                16 => Some(0xd8),
                _ => None,
            };
            match fixed {
                Some(marker) => out.push(marker),
                None => length(data.len(), [0xc7, 0xc8, 0xc9], out),
            }
            out.push(*tag as u8);
            out.extend_from_slice(data);
        }
    }
}

/// A value's encoding as a fresh buffer.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

fn encode_uint(u: u64, out: &mut Vec<u8>) {
    if u < 128 {
        out.push(u as u8);
    } else if u <= u64::from(u8::MAX) {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        encode_uint(i as u64, out);
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// A length with 8-, 16- and 32-bit forms (str8+, bin, ext).
fn length(len: usize, markers: [u8; 3], out: &mut Vec<u8>) {
    if len <= usize::from(u8::MAX) {
        out.extend_from_slice(&[markers[0], len as u8]);
    } else if len <= usize::from(u16::MAX) {
        out.push(markers[1]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(markers[2]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// An array or map header: fix form below 16, then 16- and 32-bit forms.
fn container(len: usize, fix: u8, markers: [u8; 2], out: &mut Vec<u8>) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(markers[0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(markers[1]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Limits that keep a hostile peer from making the decoder allocate or
/// recurse without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest encoded value accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and maps accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            max_depth: 32,
        }
    }
}

/// The bytes are not (or cannot be allowed to become) one MessagePack value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("msgpack: reserved marker byte 0xc1")]
    ReservedMarker,
    #[error("msgpack: value of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("msgpack: nesting deeper than {0} levels")]
    TooDeep(usize),
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A whole value and how many bytes it took.
    Value(Value, usize),
    /// The buffer holds only the beginning of a value.
    Incomplete,
}

/// Decodes the value at the start of `buf`.
pub fn decode(buf: &[u8], limits: Limits) -> Result<Decoded, DecodeError> {
    let mut cursor = Cursor {
        buf,
        pos: 0,
        limits,
    };
    match cursor.value(0) {
        Ok(v) => Ok(Decoded::Value(v, cursor.pos)),
        Err(Stop::Incomplete) => {
            if buf.len() > limits.max_bytes {
                Err(DecodeError::TooLarge(buf.len() as u64))
            } else {
                Ok(Decoded::Incomplete)
            }
        }
        Err(Stop::Invalid(e)) => Err(e),
    }
}

/// Decodes a buffer that must hold exactly one value (tests, fixtures).
pub fn from_bytes(buf: &[u8]) -> Option<Value> {
    match decode(buf, Limits::default()) {
        Ok(Decoded::Value(v, used)) if used == buf.len() => Some(v),
        _ => None,
    }
}

enum Stop {
    Incomplete,
    Invalid(DecodeError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Stop::Invalid(e)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl Cursor<'_> {
    fn take(&mut self, n: u64) -> Result<&[u8], Stop> {
        if n > self.limits.max_bytes as u64 {
            return Err(DecodeError::TooLarge(n).into());
        }
        let n = n as usize;
        let end = self.pos.checked_add(n).ok_or(Stop::Incomplete)?;
        if end > self.buf.len() {
            return Err(Stop::Incomplete);
        }
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn len8(&mut self) -> Result<u64, Stop> {
        Ok(u64::from(self.byte()?))
    }

    fn len16(&mut self) -> Result<u64, Stop> {
        Ok(u64::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<u64, Stop> {
        Ok(u64::from(u32::from_be_bytes(self.be()?)))
    }

    fn text(&mut self, len: u64) -> Result<Value, Stop> {
        let bytes = self.take(len)?;
        Ok(Value::Str(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn bin(&mut self, len: u64) -> Result<Value, Stop> {
        Ok(Value::Bin(self.take(len)?.to_vec()))
    }

    fn ext(&mut self, len: u64) -> Result<Value, Stop> {
        let tag = self.byte()? as i8;
        Ok(Value::Ext(tag, self.take(len)?.to_vec()))
    }

    fn array(&mut self, len: u64, depth: usize) -> Result<Value, Stop> {
        self.check_depth(depth)?;
        // Every element takes at least one byte: never reserve more than
        // what is left in the buffer.
        let cap = (len as usize).min(self.buf.len() - self.pos);
        let mut items = Vec::with_capacity(cap);
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: u64, depth: usize) -> Result<Value, Stop> {
        self.check_depth(depth)?;
        let cap = (len as usize).min((self.buf.len() - self.pos) / 2);
        let mut entries = Vec::with_capacity(cap);
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn check_depth(&self, depth: usize) -> Result<(), Stop> {
        if depth >= self.limits.max_depth {
            Err(DecodeError::TooDeep(self.limits.max_depth).into())
        } else {
            Ok(())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Stop> {
        let marker = Marker::from_u8(self.byte()?);
        Ok(match marker {
            Marker::FixPos(n) => Value::Uint(u64::from(n)),
            Marker::FixNeg(n) => Value::Int(i64::from(n)),
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::U8 => Value::Uint(u64::from(self.byte()?)),
            Marker::U16 => Value::Uint(u64::from(u16::from_be_bytes(self.be()?))),
            Marker::U32 => Value::Uint(u64::from(u32::from_be_bytes(self.be()?))),
            Marker::U64 => Value::Uint(u64::from_be_bytes(self.be()?)),
            Marker::I8 => Value::Int(i64::from(self.byte()? as i8)),
            Marker::I16 => Value::Int(i64::from(i16::from_be_bytes(self.be()?))),
            Marker::I32 => Value::Int(i64::from(i32::from_be_bytes(self.be()?))),
            Marker::I64 => Value::Int(i64::from_be_bytes(self.be()?)),
            Marker::F32 => Value::F32(f32::from_bits(u32::from_be_bytes(self.be()?))),
            Marker::F64 => Value::F64(f64::from_bits(u64::from_be_bytes(self.be()?))),
            Marker::FixStr(n) => self.text(u64::from(n))?,
            Marker::Str8 => {
                let n = self.len8()?;
                self.text(n)?
            }
            Marker::Str16 => {
                let n = self.len16()?;
                self.text(n)?
            }
            Marker::Str32 => {
                let n = self.len32()?;
                self.text(n)?
            }
            Marker::Bin8 => {
                let n = self.len8()?;
                self.bin(n)?
            }
            Marker::Bin16 => {
                let n = self.len16()?;
                self.bin(n)?
            }
            Marker::Bin32 => {
                let n = self.len32()?;
                self.bin(n)?
            }
            Marker::FixArray(n) => self.array(u64::from(n), depth)?,
            Marker::Array16 => {
                let n = self.len16()?;
                self.array(n, depth)?
            }
            Marker::Array32 => {
                let n = self.len32()?;
                self.array(n, depth)?
            }
            Marker::FixMap(n) => self.map(u64::from(n), depth)?,
            Marker::Map16 => {
                let n = self.len16()?;
                self.map(n, depth)?
            }
            Marker::Map32 => {
                let n = self.len32()?;
                self.map(n, depth)?
            }
            Marker::FixExt1 => self.ext(1)?,
            Marker::FixExt2 => self.ext(2)?,
            Marker::FixExt4 => self.ext(4)?,
            Marker::FixExt8 => self.ext(8)?,
            Marker::FixExt16 => self.ext(16)?,
            Marker::Ext8 => {
                let n = self.len8()?;
                self.ext(n)?
            }
            Marker::Ext16 => {
                let n = self.len16()?;
                self.ext(n)?
            }
            Marker::Ext32 => {
                let n = self.len32()?;
                self.ext(n)?
            }
            Marker::Reserved => return Err(DecodeError::ReservedMarker.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(v: &Value) -> Vec<u8> {
        to_bytes(v)
    }

    #[test]
    fn integers_take_gos_shortest_forms() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (255, &[0xcc, 0xff]),
            (256, &[0xcd, 0x01, 0x00]),
            (65536, &[0xce, 0x00, 0x01, 0x00, 0x00]),
            (1 << 32, &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-128, &[0xd0, 0x80]),
            (-129, &[0xd1, 0xff, 0x7f]),
            (-32769, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (i, want) in cases {
            assert_eq!(bytes(&Value::Int(*i)), *want, "int {i}");
        }
        assert_eq!(
            bytes(&Value::Uint(u64::MAX)),
            [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn strings_use_str8_and_bytes_use_bin() {
        assert_eq!(bytes(&Value::str("")), [0xa0]);
        assert_eq!(bytes(&Value::str("Seq")), [0xa3, b'S', b'e', b'q']);
        let s31 = "x".repeat(31);
        assert_eq!(bytes(&Value::str(s31.as_str()))[0], 0xbf);
        let s32 = "x".repeat(32);
        assert_eq!(&bytes(&Value::str(s32.as_str()))[..2], [0xd9, 32]);
        let s256 = "x".repeat(256);
        assert_eq!(&bytes(&Value::str(s256.as_str()))[..3], [0xda, 0x01, 0x00]);
        assert_eq!(
            bytes(&Value::Bin(vec![127, 0, 0, 1])),
            [0xc4, 4, 127, 0, 0, 1]
        );
        assert_eq!(&bytes(&Value::Bin(vec![0; 300]))[..3], [0xc5, 0x01, 0x2c]);
        assert_eq!(bytes(&Value::bytes_or_nil(&[])), [0xc0]);
    }

    #[test]
    fn containers_and_floats() {
        assert_eq!(bytes(&Value::Array(vec![])), [0x90]);
        assert_eq!(bytes(&Value::Map(vec![])), [0x80]);
        let a16 = Value::Array(vec![Value::Nil; 16]);
        assert_eq!(&bytes(&a16)[..3], [0xdc, 0x00, 0x10]);
        let m16 = Value::Map((0..16).map(|i| (Value::Uint(i), Value::Nil)).collect());
        assert_eq!(&bytes(&m16)[..3], [0xde, 0x00, 0x10]);
        assert_eq!(
            bytes(&Value::F64(1.5)),
            [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes(&Value::Bool(true)), [0xc3]);
    }

    #[test]
    fn struct_fields_are_sorted_by_name() {
        let header = Value::go_struct(vec![("Seq", Value::Uint(1)), ("Error", Value::str(""))]);
        assert_eq!(
            bytes(&header),
            [0x82, 0xa5, b'E', b'r', b'r', b'o', b'r', 0xa0, 0xa3, b'S', b'e', b'q', 0x01]
        );
    }

    #[test]
    fn incomplete_prefixes_ask_for_more() {
        let full = bytes(&Value::go_struct(vec![
            ("Name", Value::str("node-a")),
            ("Payload", Value::Bin(vec![1, 2, 3])),
            ("Tags", Value::Array(vec![Value::Int(-5), Value::F64(2.0)])),
        ]));
        for cut in 0..full.len() {
            assert_eq!(
                decode(&full[..cut], Limits::default()),
                Ok(Decoded::Incomplete),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            decode(&full, Limits::default()),
            Ok(Decoded::Value(_, n)) if n == full.len()
        ));
    }

    #[test]
    fn hostile_lengths_and_depth_are_refused() {
        let limits = Limits {
            max_bytes: 1024,
            max_depth: 4,
        };
        assert_eq!(
            decode(&[0xc6, 0xff, 0xff, 0xff, 0xff], limits),
            Err(DecodeError::TooLarge(u64::from(u32::MAX)))
        );
        // A huge declared array count with little data is just incomplete,
        // and must not reserve memory for the count.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], limits),
            Ok(Decoded::Incomplete)
        );
        let deep = [0x91u8; 10];
        assert_eq!(decode(&deep, limits), Err(DecodeError::TooDeep(4)));
        assert_eq!(decode(&[0xc1], limits), Err(DecodeError::ReservedMarker));
    }

    #[test]
    fn lenient_accessors() {
        assert_eq!(
            Value::Bin(b"abc".to_vec()).as_text().as_deref(),
            Some("abc")
        );
        assert_eq!(Value::str("abc").as_byte_slice(), Some(&b"abc"[..]));
        assert_eq!(Value::Int(7).as_u64(), Some(7));
        assert_eq!(Value::Int(-7).as_u64(), None);
        assert_eq!(Value::Uint(u64::MAX).as_i64(), None);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| if i < 0 {
                Value::Int(i)
            } else {
                Value::Uint(i as u64)
            }),
            any::<u64>().prop_map(Value::Uint),
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::F64),
            ".{0,40}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bin),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let b = bytes(&v);
            prop_assert_eq!(from_bytes(&b), Some(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b, Limits { max_bytes: 1 << 16, max_depth: 8 });
        }
    }
}
