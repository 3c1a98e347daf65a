//! What a protocol decoder learned from a reply, beyond what the signature
//! file's regexes can say (binary version fields, lists, BER and DNS records).
//! Every string in here is escaped and bounded by [`Decoded::put`] and friends.

use std::collections::BTreeMap;

use scanfleet_common::escape_bytes;

/// Longest decoded value kept, in input bytes (before escaping).
pub const MAX_VALUE: usize = 256;

/// Facts a decoder adds to the signature's match: fields the signature left
/// empty are filled from here, and `extra` keys are added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub product: Option<String>,
    pub version: Option<String>,
    pub cpe: Option<String>,
    pub extra: BTreeMap<String, String>,
}

impl Decoded {
    /// Add an extra fact, escaped and bounded; empty values are left out.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        if !value.is_empty() {
            self.extra
                .insert(key.to_string(), escape_bytes(value, MAX_VALUE));
        }
    }

    /// Escape and bound a value for one of the fields.
    pub fn text(value: &[u8]) -> Option<String> {
        (!value.is_empty()).then(|| escape_bytes(value, MAX_VALUE))
    }

    /// Whether the decoder learned anything.
    pub fn is_empty(&self) -> bool {
        self.product.is_none()
            && self.version.is_none()
            && self.cpe.is_none()
            && self.extra.is_empty()
    }
}

/// A big-endian u16 at `at`, if the buffer is long enough.
pub fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// A big-endian u32 at `at`, if the buffer is long enough.
pub fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A little-endian u16 at `at`, if the buffer is long enough.
pub fn le16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// A little-endian u32 at `at`, if the buffer is long enough.
pub fn le32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
