//! A bounds-checked reader over an untrusted datagram: every read says `None`
//! past the end instead of panicking, so reply parsers are total functions.

use scanfleet_common::escape_bytes;

/// Longest fact (a version string, sysDescr, ...) kept from a reply, in input bytes.
pub const FACT_MAX: usize = 200;

/// Escape and bound an untrusted byte string for `ServiceInfo`.
pub fn fact(bytes: &[u8]) -> String {
    escape_bytes(bytes, FACT_MAX)
}

/// A cursor over a reply.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The whole datagram (for compression pointers, which are absolute).
    pub fn whole(&self) -> &'a [u8] {
        self.buf
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
}
