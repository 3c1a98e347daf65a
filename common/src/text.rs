//! Untrusted text on a terminal. Banners, asset ids, tags, scan ids and results
//! read back from a store came from someone else; printed raw, an ESC or OSC
//! sequence in them rewrites the terminal (its title, its colours, what the lines
//! above say) and a bidi override reorders what the reader sees.
//!
//! [`escape_bytes`] is the one escaping rule of scanfleet: printable ASCII stays,
//! `\` and everything else become `\\`, `\n`, `\r`, `\t` or `\xNN`, so C0 and C1
//! controls, DEL, ESC/OSC/CSI introducers and every non-ASCII character (bidi
//! overrides included) are shown, not obeyed. Length is bounded and a cut is marked
//! with `...`. [`escape`] applies it to a string.

/// How much of a value typed by the user an error message echoes back.
pub const ECHO_MAX: usize = 100;

/// Escape untrusted bytes for display and storage: printable ASCII stays, `\` and
/// everything else become `\\`, `\n`, `\r`, `\t` or `\xNN`. At most `max` input
/// bytes are kept; a cut is marked with `...`. The output is printable ASCII only.
pub fn escape_bytes(bytes: &[u8], max: usize) -> String {
    let cut = bytes.len() > max;
    let kept = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(kept.len() + 8);
    for &b in kept {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    if cut {
        out.push_str("...");
    }
    out
}

/// [`escape_bytes`] for a string: at most `max` bytes of it, escaped.
pub fn escape(s: &str, max: usize) -> String {
    escape_bytes(s.as_bytes(), max)
}

/// A value the user typed, as an error message echoes it: quoted, escaped, and at
/// most [`ECHO_MAX`] bytes of it (a 100 KB argument is not printed back whole).
pub fn echo(s: &str) -> String {
    format!("\"{}\"", escape(s, ECHO_MAX))
}

/// `s` percent-encoded for a URL query value (what a file path in a queue or
/// store URL needs): unreserved bytes and `/` kept, every other byte `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The reverse of [`percent_encode`]; `None` for a bad `%` escape or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn printable_ascii_stays_and_controls_are_shown() {
        assert_eq!(escape_bytes(b"SSH-2.0-x\r\n", 100), "SSH-2.0-x\\r\\n");
        assert_eq!(escape_bytes(b"\x1b[31m", 100), "\\x1b[31m");
        assert_eq!(escape_bytes(b"abcdef", 3), "abc...");
        assert_eq!(escape("a\\b", 10), "a\\\\b");
        // OSC 0 (set the terminal title), terminated by BEL.
        assert_eq!(escape("\x1b]0;pwned\x07", 100), "\\x1b]0;pwned\\x07");
        // C1 CSI (U+009B) and a right-to-left override (U+202E).
        assert_eq!(escape("\u{9b}2J", 100), "\\xc2\\x9b2J");
        assert_eq!(escape("i-\u{202e}gnp.exe", 100), "i-\\xe2\\x80\\xaegnp.exe");
        assert_eq!(escape("\x7f", 10), "\\x7f");
    }

    #[test]
    fn echo_is_bounded() {
        let big = "x".repeat(100_000);
        let e = echo(&big);
        assert_eq!(e.len(), ECHO_MAX + 5);
        assert!(e.ends_with("...\""));
        assert_eq!(echo("10.0.0.1"), "\"10.0.0.1\"");
    }

    proptest! {
        /// Whatever comes in, nothing a terminal obeys goes out: no C0 or C1
        /// control, no DEL, no non-ASCII character (so no bidi override), and the
        /// length is bounded.
        #[test]
        fn output_never_holds_control_characters(bytes in proptest::collection::vec(any::<u8>(), 0..400), max in 0usize..300) {
            let s = escape_bytes(&bytes, max);
            prop_assert!(s.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert!(s.chars().all(|c| !c.is_control()));
            prop_assert!(s.len() <= 4 * max + 3);
        }

        #[test]
        fn strings_too(s in "\\PC{0,60}|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]{0,20}") {
            let e = escape(&s, ECHO_MAX);
            prop_assert!(e.chars().all(|c| c.is_ascii() && !c.is_control()));
            prop_assert!(!e.contains(char::from_u32(0x202e).unwrap_or('x')));
        }
    }
}
