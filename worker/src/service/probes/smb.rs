//! SMB2/3 NEGOTIATE ([MS-SMB2] 2.2.3 and 2.2.4) over direct TCP (port 445,
//! a 4-byte NetBIOS-style length in front). We offer 2.0.2 to 3.1.1 (with the
//! preauthentication-integrity context 3.1.1 requires); the answer carries the
//! dialect the server picked and whether it requires signing.

use super::decoded::{Decoded, be32, le16};

const DIALECTS: [u16; 5] = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311];

/// The NEGOTIATE request with its direct-TCP length prefix.
pub fn request() -> Vec<u8> {
    let mut smb = Vec::with_capacity(200);
    // SMB2 header, 64 bytes.
    smb.extend_from_slice(b"\xfeSMB");
    smb.extend_from_slice(&64u16.to_le_bytes()); // StructureSize
    smb.extend_from_slice(&0u16.to_le_bytes()); // CreditCharge
    smb.extend_from_slice(&0u32.to_le_bytes()); // Status
    smb.extend_from_slice(&0u16.to_le_bytes()); // Command NEGOTIATE
    smb.extend_from_slice(&1u16.to_le_bytes()); // CreditRequest
    smb.extend_from_slice(&0u32.to_le_bytes()); // Flags
    smb.extend_from_slice(&0u32.to_le_bytes()); // NextCommand
    smb.extend_from_slice(&0u64.to_le_bytes()); // MessageId
    smb.extend_from_slice(&0u32.to_le_bytes()); // Reserved (ProcessId)
    smb.extend_from_slice(&0u32.to_le_bytes()); // TreeId
    smb.extend_from_slice(&0u64.to_le_bytes()); // SessionId
    smb.extend_from_slice(&[0; 16]); // Signature
    // NEGOTIATE body.
    let body_start = smb.len();
    smb.extend_from_slice(&36u16.to_le_bytes()); // StructureSize
    smb.extend_from_slice(&(DIALECTS.len() as u16).to_le_bytes());
    smb.extend_from_slice(&1u16.to_le_bytes()); // SecurityMode: signing enabled
    smb.extend_from_slice(&0u16.to_le_bytes()); // Reserved
    smb.extend_from_slice(&0u32.to_le_bytes()); // Capabilities
    smb.extend_from_slice(b"scanfleet-detect"); // ClientGuid, 16 bytes
    let offset_at = smb.len();
    smb.extend_from_slice(&0u32.to_le_bytes()); // NegotiateContextOffset, set below
    smb.extend_from_slice(&1u16.to_le_bytes()); // NegotiateContextCount
    smb.extend_from_slice(&0u16.to_le_bytes()); // Reserved2
    for d in DIALECTS {
        smb.extend_from_slice(&d.to_le_bytes());
    }
    while (smb.len() - body_start) % 8 != 0 {
        smb.push(0);
    }
    let context_offset = smb.len() as u32;
    smb[offset_at..offset_at + 4].copy_from_slice(&context_offset.to_le_bytes());
    // SMB2_PREAUTH_INTEGRITY_CAPABILITIES: one hash (SHA-512), a 32-byte salt.
    let mut ctx = Vec::with_capacity(38);
    ctx.extend_from_slice(&1u16.to_le_bytes()); // HashAlgorithmCount
    ctx.extend_from_slice(&32u16.to_le_bytes()); // SaltLength
    ctx.extend_from_slice(&1u16.to_le_bytes()); // SHA-512
    ctx.extend_from_slice(b"scanfleet-detect-preauth-salt-32");
    smb.extend_from_slice(&1u16.to_le_bytes()); // ContextType
    smb.extend_from_slice(&(ctx.len() as u16).to_le_bytes());
    smb.extend_from_slice(&0u32.to_le_bytes()); // Reserved
    smb.extend_from_slice(&ctx);
    let mut out = (smb.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&smb);
    out
}

/// Whole when the length prefix is satisfied.
pub fn is_complete(buf: &[u8]) -> bool {
    be32(buf, 0).is_some_and(|n| buf.len() >= (n as usize & 0x00ff_ffff).saturating_add(4))
}

/// `smb.dialect` (e.g. `3.1.1`) and `smb.signing` (`required` or `enabled`)
/// from a NEGOTIATE response; `smb.dialect` = `1` for an SMB1 answer.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let Some(smb) = buf.get(4..) else {
        return d;
    };
    if smb.starts_with(b"\xffSMB") {
        d.put("smb.dialect", b"1");
        return d;
    }
    if !smb.starts_with(b"\xfeSMB") || le16(smb, 12) != Some(0) {
        return d;
    }
    let body = &smb[64.min(smb.len())..];
    if le16(body, 0) != Some(65) {
        return d;
    }
    if let Some(mode) = le16(body, 2) {
        d.put(
            "smb.signing",
            if mode & 2 != 0 {
                b"required"
            } else {
                b"enabled"
            },
        );
    }
    let dialect: &[u8] = match le16(body, 4) {
        Some(0x0202) => b"2.0.2",
        Some(0x0210) => b"2.1",
        Some(0x0300) => b"3.0",
        Some(0x0302) => b"3.0.2",
        Some(0x0311) => b"3.1.1",
        Some(0x02ff) => b"2.???",
        _ => b"",
    };
    d.put("smb.dialect", dialect);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lengths_agree() {
        let r = request();
        assert!(is_complete(&r));
        assert_eq!(be32(&r, 0).unwrap() as usize, r.len() - 4);
        assert_eq!(&r[4..8], b"\xfeSMB");
        let off = super::super::decoded::le32(&r, 4 + 64 + 28).unwrap() as usize;
        assert_eq!(off % 8, 0);
        assert_eq!(le16(&r[4..], off), Some(1));
    }

    #[test]
    fn smb1_and_garbage() {
        assert_eq!(
            decode(b"\x00\x00\x00\x20\xffSMBr").extra["smb.dialect"],
            "1"
        );
        assert!(decode(b"\x00\x00\x00\x05\xfeSMB").is_empty());
    }
}
