//! Gossip encryption keys as the operator manages them: rotating the LAN
//! pool's keyring with Serf's key-management queries (install a new key
//! everywhere, make it the primary, remove the old one) and making fresh
//! keys for `keygen`.
//!
//! Every member answers the query for itself, so the summary says how many
//! members hold each key; the AgentNode rewrites the keyring file of each
//! member whose keyring changed, and a restart loads that file.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serf::KeySummary;

use crate::lan::LanPool;

/// A key-management operation on the pool's keyring; keys in base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringOp {
    List,
    Install(String),
    Use(String),
    Remove(String),
}

impl KeyringOp {
    pub(crate) fn serf_op(&self) -> serf::KeyOp {
        match self {
            KeyringOp::List => serf::KeyOp::List,
            KeyringOp::Install(_) => serf::KeyOp::Install,
            KeyringOp::Use(_) => serf::KeyOp::Use,
            KeyringOp::Remove(_) => serf::KeyOp::Remove,
        }
    }

    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            KeyringOp::List => None,
            KeyringOp::Install(k) | KeyringOp::Use(k) | KeyringOp::Remove(k) => Some(k),
        }
    }
}

/// Go's `base64.StdEncoding`: padding required, stray low bits in the
/// last symbol tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a base64 key as Serf's key manager does, failing with Go's
/// words (`illegal base64 data at input byte N`). The key's length is
/// left for every member to judge, as Serf leaves it.
pub fn decode_key(key: &str) -> Result<Vec<u8>, String> {
    GO_STD.decode(key).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => at,
            // Misplaced padding: Go points at the first `=`.
            base64::DecodeError::InvalidPadding if key.contains('=') => {
                key.find('=').unwrap_or_default()
            }
            // An incomplete last quantum: Go points at its start.
            base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
                key.len() - key.len() % 4
            }
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// A fresh 32-byte key (AES-256), in base64: what `keygen` prints.
pub fn generate_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

impl LanPool {
    /// The keys every member holds and uses as primary.
    pub async fn list_keys(&self, relay_factor: u8) -> Result<KeySummary, String> {
        self.key_operation(KeyringOp::List, relay_factor).await
    }

    /// Adds `key` to every member's keyring.
    pub async fn install_key(&self, key: &str, relay_factor: u8) -> Result<KeySummary, String> {
        self.key_operation(KeyringOp::Install(key.to_owned()), relay_factor)
            .await
    }

    /// Makes the installed `key` every member's primary key.
    pub async fn use_key(&self, key: &str, relay_factor: u8) -> Result<KeySummary, String> {
        self.key_operation(KeyringOp::Use(key.to_owned()), relay_factor)
            .await
    }

    /// Removes `key`, which no member may be using as its primary.
    pub async fn remove_key(&self, key: &str, relay_factor: u8) -> Result<KeySummary, String> {
        self.key_operation(KeyringOp::Remove(key.to_owned()), relay_factor)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_go_decodes_them() {
        let key = generate_key();
        assert_eq!(key.len(), 44);
        assert_eq!(decode_key(&key).unwrap().len(), 32);
        // Go's decoder does not insist on zero bits after the last byte.
        assert_eq!(decode_key("AB==").unwrap(), vec![0]);
        assert_eq!(decode_key("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn bad_keys_are_refused_in_gos_words() {
        let err = |k: &str| decode_key(k).unwrap_err();
        assert_eq!(err("not!base64"), "illegal base64 data at input byte 3");
        assert_eq!(err("abcdabc"), "illegal base64 data at input byte 4");
        assert_eq!(err("ab=c"), "illegal base64 data at input byte 2");
    }

    #[test]
    fn operations_carry_their_key() {
        assert_eq!(KeyringOp::List.key(), None);
        assert_eq!(KeyringOp::Use("k".into()).key(), Some("k"));
        assert_eq!(KeyringOp::Remove("k".into()).serf_op(), serf::KeyOp::Remove);
    }
}
