//! AES-GCM encryption as memberlist does it.
//!
//! Packets: `[vsn][12-byte nonce][ciphertext + 16-byte tag]`, empty AAD.
//! Streams: `[10][u32 BE len][vsn][nonce][ct+tag]`, the 5-byte header is AAD.
//! Version 1 has no padding; version 0 (protocol 1 peers) pads with PKCS#7
//! and is accepted on decrypt only. The nonce is an argument: this module
//! never draws randomness.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};

use crate::CodecError;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// Bytes of the version prefix.
pub const VERSION_SIZE: usize = 1;
/// Bytes of the GCM nonce.
pub const NONCE_SIZE: usize = 12;
/// Bytes of the GCM tag.
pub const TAG_SIZE: usize = 16;
/// The encryption version this module writes.
pub const ENCRYPTION_VERSION: u8 = 1;

/// One AES key (16, 24 or 32 bytes: AES-128/192/256).
#[derive(Clone)]
pub struct Key(KeyCipher, Vec<u8>);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.1 == other.1
    }
}

impl Eq for Key {}

#[derive(Clone)]
enum KeyCipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = match self.0 {
            KeyCipher::A128(_) => 128,
            KeyCipher::A192(_) => 192,
            KeyCipher::A256(_) => 256,
        };
        write!(f, "Key(AES-{bits}, redacted)")
    }
}

impl Key {
    /// A key from raw bytes; errors unless 16, 24 or 32 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Self, CodecError> {
        let bad = || CodecError::BadKeyLength(bytes.len());
        let cipher = match bytes.len() {
            16 => KeyCipher::A128(Box::new(
                Aes128Gcm::new_from_slice(bytes).map_err(|_| bad())?,
            )),
            24 => KeyCipher::A192(Box::new(
                Aes192Gcm::new_from_slice(bytes).map_err(|_| bad())?,
            )),
            32 => KeyCipher::A256(Box::new(
                Aes256Gcm::new_from_slice(bytes).map_err(|_| bad())?,
            )),
            n => return Err(CodecError::BadKeyLength(n)),
        };
        Ok(Key(cipher, bytes.to_vec()))
    }

    /// The raw key bytes (for listing keys, as Serf's key queries do).
    pub fn bytes(&self) -> &[u8] {
        &self.1
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_SIZE],
        msg: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CodecError> {
        let n = Nonce::from_slice(nonce);
        let p = Payload { msg, aad };
        match &self.0 {
            KeyCipher::A128(c) => c.encrypt(n, p),
            KeyCipher::A192(c) => c.encrypt(n, p),
            KeyCipher::A256(c) => c.encrypt(n, p),
        }
        .map_err(|_| CodecError::TooLarge)
    }

    fn open(&self, nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let n = Nonce::from_slice(nonce);
        let p = Payload { msg: ct, aad };
        match &self.0 {
            KeyCipher::A128(c) => c.decrypt(n, p),
            KeyCipher::A192(c) => c.decrypt(n, p),
            KeyCipher::A256(c) => c.decrypt(n, p),
        }
        .ok()
    }
}

/// Why a keyring change was refused; the keyring is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
}

/// The installed keys; the first is the primary (used to encrypt), all are
/// tried on decrypt.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring with `primary` first and then `others`.
    pub fn new(primary: Key, others: Vec<Key>) -> Self {
        let mut keys = vec![primary];
        keys.extend(others);
        Keyring { keys }
    }

    /// The installed keys, primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key used to encrypt.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Adds a key for decryption (a no-op if it is installed already).
    pub fn install(&mut self, key: Key) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Makes an installed key the primary one.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyringError> {
        let i = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled)?;
        self.keys.swap(0, i);
        Ok(())
    }

    /// Removes a key that is not the primary one.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        if self.keys[0] == *key {
            return Err(KeyringError::RemovePrimary);
        }
        self.keys.retain(|k| k != key);
        Ok(())
    }

    /// Encrypts a packet: `[1][nonce][ct+tag]`, empty AAD.
    pub fn seal_packet(&self, nonce: [u8; NONCE_SIZE], msg: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.seal_packet_aad(nonce, msg, &[])
    }

    /// Encrypts a packet with `aad` authenticated (memberlist ≥ 0.3 passes
    /// the packet label here).
    pub fn seal_packet_aad(
        &self,
        nonce: [u8; NONCE_SIZE],
        msg: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CodecError> {
        seal_into(&self.keys[0], nonce, msg, aad, Vec::new())
    }

    /// Decrypts a packet, trying every key.
    pub fn open_packet(&self, buf: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.open_with_aad(buf, &[])
    }

    /// Decrypts a packet sealed with `aad`, trying every key.
    pub fn open_packet_aad(&self, buf: &[u8], aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.open_with_aad(buf, aad)
    }

    /// Encrypts a stream payload: `[10][u32 BE len][1][nonce][ct+tag]` with
    /// the 5-byte header as AAD.
    pub fn seal_stream(&self, nonce: [u8; NONCE_SIZE], msg: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.seal_stream_labelled(nonce, msg, "")
    }

    /// Like [`seal_stream`](Self::seal_stream); the stream label follows the
    /// header in the AAD.
    pub fn seal_stream_labelled(
        &self,
        nonce: [u8; NONCE_SIZE],
        msg: &[u8],
        label: &str,
    ) -> Result<Vec<u8>, CodecError> {
        let len = VERSION_SIZE + NONCE_SIZE + msg.len() + TAG_SIZE;
        let len = u32::try_from(len).map_err(|_| CodecError::TooLarge)?;
        let mut head = vec![crate::MessageType::Encrypt as u8];
        head.extend_from_slice(&len.to_be_bytes());
        let mut aad = head.clone();
        aad.extend_from_slice(label.as_bytes());
        seal_into(&self.keys[0], nonce, msg, &aad, head)
    }

    /// Decrypts a stream frame starting with `[10][u32 BE len]`; returns the
    /// plaintext (a message starting with its type byte).
    pub fn open_stream(&self, buf: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.open_stream_labelled(buf, "")
    }

    /// Like [`open_stream`](Self::open_stream) for a labelled stream.
    pub fn open_stream_labelled(&self, buf: &[u8], label: &str) -> Result<Vec<u8>, CodecError> {
        let head = buf.get(..5).ok_or(CodecError::Truncated)?;
        if head[0] != crate::MessageType::Encrypt as u8 {
            return Err(CodecError::UnknownType(head[0]));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let body = buf
            .get(5..)
            .and_then(|b| b.get(..len))
            .ok_or(CodecError::Truncated)?;
        let mut aad = head.to_vec();
        aad.extend_from_slice(label.as_bytes());
        self.open_with_aad(body, &aad)
    }

    fn open_with_aad(&self, buf: &[u8], aad: &[u8]) -> Result<Vec<u8>, CodecError> {
        let (&vsn, _) = buf.split_first().ok_or(CodecError::Empty)?;
        if vsn > ENCRYPTION_VERSION {
            return Err(CodecError::UnsupportedEncryptionVersion(vsn));
        }
        // Version 0 carries at least one block of padding.
        let min = VERSION_SIZE + NONCE_SIZE + TAG_SIZE + if vsn == 0 { 16 } else { 0 };
        if buf.len() < min {
            return Err(CodecError::Truncated);
        }
        let nonce = &buf[VERSION_SIZE..VERSION_SIZE + NONCE_SIZE];
        let ct = &buf[VERSION_SIZE + NONCE_SIZE..];
        let plain = self
            .keys
            .iter()
            .find_map(|k| k.open(nonce, ct, aad))
            .ok_or(CodecError::NoKeyDecrypts)?;
        if vsn == 0 {
            pkcs7_strip(plain)
        } else {
            Ok(plain)
        }
    }
}

fn seal_into(
    key: &Key,
    nonce: [u8; NONCE_SIZE],
    msg: &[u8],
    aad: &[u8],
    mut out: Vec<u8>,
) -> Result<Vec<u8>, CodecError> {
    let ct = key.seal(&nonce, msg, aad)?;
    out.reserve(VERSION_SIZE + NONCE_SIZE + ct.len());
    out.push(ENCRYPTION_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn pkcs7_strip(mut plain: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    let pad = usize::from(*plain.last().ok_or(CodecError::BadPadding)?);
    if pad == 0 || pad > 16 || pad > plain.len() {
        return Err(CodecError::BadPadding);
    }
    plain.truncate(plain.len() - pad);
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(sizes: &[usize]) -> Keyring {
        let mut keys = sizes.iter().map(|&n| Key::new(&vec![n as u8; n]).unwrap());
        let first = keys.next().unwrap();
        Keyring::new(first, keys.collect())
    }

    #[test]
    fn packet_round_trip_all_sizes() {
        for n in [16, 24, 32] {
            let r = ring(&[n]);
            let ct = r.seal_packet([7; 12], b"\x00ping").unwrap();
            assert_eq!(ct.len(), 1 + 12 + 5 + 16);
            assert_eq!(ct[0], 1);
            assert_eq!(&ct[1..13], &[7; 12]);
            assert_eq!(r.open_packet(&ct).unwrap(), b"\x00ping");
        }
    }

    #[test]
    fn every_key_is_tried() {
        let sender = ring(&[24]);
        let receiver = ring(&[16, 32, 24]);
        let ct = sender.seal_packet([1; 12], b"hi").unwrap();
        assert_eq!(receiver.open_packet(&ct).unwrap(), b"hi");
        assert!(matches!(
            ring(&[16]).open_packet(&ct),
            Err(CodecError::NoKeyDecrypts)
        ));
    }

    #[test]
    fn stream_frame_uses_header_as_aad() {
        let r = ring(&[32]);
        let s = r.seal_stream([2; 12], b"\x06state").unwrap();
        assert_eq!(s[0], 10);
        assert_eq!(
            u32::from_be_bytes([s[1], s[2], s[3], s[4]]) as usize,
            s.len() - 5
        );
        assert_eq!(r.open_stream(&s).unwrap(), b"\x06state");
        // As a packet (no AAD) it must not open.
        assert!(r.open_packet(&s[5..]).is_err());
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            Key::new(&[0; 15]),
            Err(CodecError::BadKeyLength(15))
        ));
        let r = ring(&[16]);
        assert!(r.open_packet(&[]).is_err());
        assert!(r.open_packet(&[1; 20]).is_err());
        assert!(matches!(
            r.open_packet(&[2; 40]),
            Err(CodecError::UnsupportedEncryptionVersion(2))
        ));
    }
}
