//! What users give genv — command-line arguments, SDK arguments, saved configurations — each
//! kind checked by one rule here, at the edge, into a typed value that nothing checks again.
//! A refusal is one message that names the input, shows the value escaped ([`quote`]) and says
//! what is allowed: `invalid device count '33': expected a whole number from 0 to 32`.

use crate::layout::{EID_MAX, GPU_MEMORY_MAX, MAX_DEVICES, NAME_MAX};
use crate::text::{quote, quote_bytes};
use crate::units;
use crate::Error;
use serde::{Serialize, Serializer};
use std::ffi::OsStr;
use std::fmt::{self, Display};
use std::os::unix::ffi::OsStrExt;

/// The one shape of every refusal of an input.
fn invalid(what: &str, shown: impl Display, allowed: impl Display) -> Error {
    Error::Input(format!("invalid {what} {shown}: {allowed}"))
}

/// A kind of input, checked from text.
pub trait Input: Sized {
    /// How messages name the input ("device count").
    const WHAT: &'static str;

    /// Checks text the user gave.
    fn parse(s: &str) -> Result<Self, Error>;

    /// The refusal of input that must be text but is not UTF-8.
    fn not_utf8(bytes: &[u8]) -> Error {
        invalid(Self::WHAT, quote_bytes(bytes), "not valid UTF-8")
    }

    /// Checks an argument as the OS gave it (bytes that need not be UTF-8).
    fn parse_os(s: &OsStr) -> Result<Self, Error> {
        match s.to_str() {
            Some(t) => Self::parse(t),
            None => Err(Self::not_utf8(s.as_bytes())),
        }
    }
}

/// A whole-number input, given as text (the CLI: shown back quoted, as typed) or as a number
/// (the SDK, a saved configuration: shown back as the number).
pub trait Whole: Input {
    /// What is allowed, for the refusal.
    fn allowed() -> String;

    /// The value, when the rule allows it.
    fn new(n: u32) -> Option<Self>;

    fn invalid(shown: impl Display) -> Error {
        invalid(Self::WHAT, shown, Self::allowed())
    }

    fn from_int(n: i64) -> Result<Self, Error> {
        u32::try_from(n)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| Self::invalid(n))
    }

    /// Blanks around the digits are allowed (a value quoted with its spaces in a script).
    fn from_text(s: &str) -> Result<Self, Error> {
        s.trim()
            .parse()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| Self::invalid(quote(s)))
    }
}

/// Text inputs are plain strings once checked: these give them back as `&str`.
macro_rules! text_input {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// An environment identifier: 1 to [`EID_MAX`] printable ASCII characters without spaces (it
/// goes into shell code and file names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvId(String);
text_input!(EnvId);

impl Input for EnvId {
    const WHAT: &'static str = "environment identifier";

    fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > EID_MAX || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(
                Self::WHAT,
                quote(s),
                format_args!("use 1 to {EID_MAX} printable ASCII characters without spaces"),
            ));
        }
        Ok(EnvId(s.to_string()))
    }
}

/// An environment name: 1 to [`NAME_MAX`] bytes (what the state keeps) of printable
/// characters, not only spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Name(pub(crate) String);
text_input!(Name);

impl Input for Name {
    const WHAT: &'static str = "name";

    fn parse(s: &str) -> Result<Self, Error> {
        if s.trim().is_empty() || s.len() > NAME_MAX || s.chars().any(char::is_control) {
            return Err(invalid(
                Self::WHAT,
                quote(s),
                format_args!("use 1 to {NAME_MAX} bytes of printable characters, not only spaces"),
            ));
        }
        Ok(Name(s.to_string()))
    }
}

/// How many devices an environment attaches: 0 to [`MAX_DEVICES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DeviceCount(pub(crate) u32);

impl DeviceCount {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Input for DeviceCount {
    const WHAT: &'static str = "device count";

    fn parse(s: &str) -> Result<Self, Error> {
        Self::from_text(s)
    }
}

impl Whole for DeviceCount {
    fn allowed() -> String {
        format!("expected a whole number from 0 to {MAX_DEVICES}")
    }

    fn new(n: u32) -> Option<Self> {
        (n as usize <= MAX_DEVICES).then_some(DeviceCount(n))
    }
}

impl Display for DeviceCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A device, by NVML index. Whether this machine has it is the state's to say (placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIndex(u32);

impl DeviceIndex {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Input for DeviceIndex {
    const WHAT: &'static str = "device index";

    fn parse(s: &str) -> Result<Self, Error> {
        Self::from_text(s)
    }
}

impl Whole for DeviceIndex {
    fn allowed() -> String {
        "expected a whole number (0 for the first GPU)".into()
    }

    fn new(n: u32) -> Option<Self> {
        Some(DeviceIndex(n))
    }
}

/// A process id, of a process that activates or deactivates an environment (the SDK's
/// argument; the state says whether it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId(u32);

impl ProcessId {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Input for ProcessId {
    const WHAT: &'static str = "process id";

    fn parse(s: &str) -> Result<Self, Error> {
        Self::from_text(s)
    }
}

impl Whole for ProcessId {
    fn allowed() -> String {
        "expected the pid of a running process".into()
    }

    fn new(n: u32) -> Option<Self> {
        Some(ProcessId(n))
    }
}

/// A GPU memory capacity per device: the bytes, and the text the user wrote (`4g`), which is
/// what genv shows back and saves. Zero is refused (it would allow nothing), and so is text
/// longer than the state keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub(crate) bytes: u64,
    pub(crate) text: String,
}

impl Capacity {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Input for Capacity {
    const WHAT: &'static str = "GPU memory";

    fn parse(s: &str) -> Result<Self, Error> {
        if s.len() > GPU_MEMORY_MAX {
            return Err(invalid(
                Self::WHAT,
                quote(s),
                format_args!("at most {GPU_MEMORY_MAX} bytes, such as 42mi, 4g or 44040192"),
            ));
        }
        match units::parse_amount(s) {
            Some(bytes) if bytes > 0 => Ok(Capacity {
                bytes,
                text: s.to_string(),
            }),
            _ => Err(invalid(
                Self::WHAT,
                quote(s),
                format_args!("expected {}", units::UNITS_HELP),
            )),
        }
    }
}

impl Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// As written: `.genv/config.json` and `--json` show `"4g"`, not bytes.
impl Serialize for Capacity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::EnvRec;

    #[test]
    fn limits_are_the_layout_fields_less_the_nul() {
        let e: EnvRec = EnvRec::empty();
        assert_eq!(EID_MAX, e.eid.len() - 1);
        assert_eq!(NAME_MAX, e.name.len() - 1);
        assert_eq!(GPU_MEMORY_MAX, e.cfg_mem_text.len() - 1);
    }

    #[test]
    fn limits_count_bytes_and_refuse_one_past() {
        Name::parse(&"n".repeat(NAME_MAX)).unwrap();
        assert!(Name::parse(&"n".repeat(NAME_MAX + 1)).is_err());
        // Two-byte characters: the limit is in bytes, as the field holds them.
        let wide = "é".repeat(NAME_MAX / 2);
        Name::parse(&format!("{wide}n")).unwrap();
        let err = Name::parse(&format!("{wide}é")).unwrap_err().to_string();
        assert!(err.contains(&format!("1 to {NAME_MAX} bytes")), "{err}");

        EnvId::parse(&"e".repeat(EID_MAX)).unwrap();
        assert!(EnvId::parse(&"e".repeat(EID_MAX + 1)).is_err());

        let at = format!("{}4g", "0".repeat(GPU_MEMORY_MAX - 2));
        let c = Capacity::parse(&at).unwrap();
        assert_eq!((c.bytes(), c.as_str()), (4_000_000_000, at.as_str()));
        let err = Capacity::parse(&format!("0{at}")).unwrap_err().to_string();
        assert!(
            err.contains(&format!("at most {GPU_MEMORY_MAX} bytes")),
            "{err}"
        );
    }

    #[test]
    fn numbers_from_text_and_from_ints_follow_one_rule() {
        assert_eq!(DeviceCount::parse(" 2 ").map(DeviceCount::get), Ok(2));
        assert_eq!(
            DeviceCount::parse(&MAX_DEVICES.to_string()).map(DeviceCount::get),
            Ok(MAX_DEVICES as u32)
        );
        let rule = format!("expected a whole number from 0 to {MAX_DEVICES}");
        // Text is shown quoted, as typed; a number as the number.
        assert_eq!(
            DeviceCount::parse("33").unwrap_err().to_string(),
            format!("invalid device count '33': {rule}")
        );
        assert_eq!(
            DeviceCount::from_int(33).unwrap_err().to_string(),
            format!("invalid device count 33: {rule}")
        );
        assert_eq!(
            DeviceCount::from_int(-1).unwrap_err().to_string(),
            format!("invalid device count -1: {rule}")
        );
        assert_eq!(DeviceIndex::from_int(7).map(DeviceIndex::get), Ok(7));
        assert_eq!(
            DeviceIndex::parse("-1").unwrap_err().to_string(),
            "invalid device index '-1': expected a whole number (0 for the first GPU)"
        );
        assert!(DeviceIndex::from_int(i64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn messages_escape_the_input() {
        let err = Capacity::parse("4\x1b[31mg").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid GPU memory '4\\x1b[31mg': expected {}",
                crate::units::UNITS_HELP
            )
        );
        let err = Name::parse("a\nb").unwrap_err().to_string();
        assert!(err.starts_with("invalid name 'a\\nb': "), "{err}");
        let err = EnvId::parse("x\u{202e}y").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid environment identifier 'x\\u{202e}y': "),
            "{err}"
        );
        let err = DeviceCount::parse("\t").unwrap_err().to_string();
        assert!(err.starts_with("invalid device count '\\t': "), "{err}");
    }

    #[test]
    fn text_that_is_not_utf8_is_named() {
        let e = Name::parse_os(OsStr::from_bytes(b"x\xff"));
        assert_eq!(
            e,
            Err(Error::Input(
                r"invalid name 'x\xff': not valid UTF-8".to_string()
            ))
        );
        assert_eq!(
            Name::parse_os(OsStr::new("ok")).map(Name::into_string),
            Ok("ok".to_string())
        );
    }
}
