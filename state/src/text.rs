//! Input shown back in messages. A message quotes what the user typed, and a terminal acts on
//! some characters instead of showing them (escape sequences recolour or move the cursor, a
//! newline breaks the one-line rule), so everything quoted goes through [`quote`]: `'…'` with
//! such characters, bytes that are not UTF-8, `\` and `'` escaped.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether a terminal would act on `c` rather than show it: control characters (C0, DEL, C1),
/// and the invisible ones that reorder text or break lines (bidi controls, zero-width
/// characters, the line and paragraph separators).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn escape_into(out: &mut String, s: &str, quoting: bool) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' | '\'' if quoting => {
                out.push('\\');
                out.push(c);
            }
            // Below 0x80 a character is its byte: `\x1b` reads the same as an invalid byte would.
            c if is_hidden(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `s` in single quotes, safe to print: see the module documentation.
pub fn quote(s: &str) -> String {
    quote_bytes(s.as_bytes())
}

/// Like [`quote`], for bytes that may not be UTF-8: an invalid byte shows as `\xNN`.
pub fn quote_bytes(bytes: &[u8]) -> String {
    format!("'{}'", escape_bytes(bytes))
}

/// What [`quote_bytes`] puts between the quotes: for a message that quotes text already.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        escape_into(&mut out, chunk.valid(), true);
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Like [`quote`], for an argument or variable as the OS gave it.
pub fn quote_os(s: &OsStr) -> String {
    quote_bytes(s.as_bytes())
}

/// Like [`quote`], for a path (file names are bytes, and may hold anything but `/` and NUL).
pub fn quote_path(p: &Path) -> String {
    quote_os(p.as_os_str())
}

/// A whole message made printable on one line: hidden characters escaped, nothing else
/// touched. For text that is not ours to quote (an argument parser's message, an OS error);
/// what we quote ourselves is already escaped and stays as it is.
pub fn printable(s: &str) -> String {
    if !s.chars().any(is_hidden) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("4g"), "'4g'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("4\x1b[31mg"), r"'4\x1b[31mg'");
        assert_eq!(quote("a\nb\tc\rd"), r"'a\nb\tc\rd'");
        assert_eq!(quote("it's a\\b"), r"'it\'s a\\b'");
        assert_eq!(quote("\x7f\u{85}\u{202e}"), r"'\x7f\u{85}\u{202e}'");
        // Printable text of any script is shown as it is.
        assert_eq!(quote("é 日本"), "'é 日本'");
        assert_eq!(quote_bytes(b"a\xffb\xc3"), r"'a\xffb\xc3'");
        assert_eq!(quote_bytes("é".as_bytes()), "'é'");
        assert_eq!(quote_os(OsStr::from_bytes(b"\xff")), r"'\xff'");
    }

    #[test]
    fn printable_escapes_only_hidden_characters() {
        assert_eq!(printable("it's a\\b 'x'"), "it's a\\b 'x'");
        assert_eq!(printable("a\x1b[0m\nb"), r"a\x1b[0m\nb");
        // What quote() escaped stays escaped once, not twice.
        let q = quote("\x1b");
        assert_eq!(printable(&format!("bad {q}")), r"bad '\x1b'");
    }
}
