//! Memory amounts as users write them: a number and an optional unit among
//! `b k m g ki mi gi` (k, m, g are powers of 1000; ki, mi, gi of 1024).

/// What `gpu-memory` accepts, for error messages.
pub const UNITS_HELP: &str =
    "a number with an optional unit b, k, m, g, ki, mi or gi (e.g. 42mi, 4g, 44040192)";

/// Parses an amount such as `42mi`, `4g` or `44040192` into bytes.
pub fn parse_amount(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Bytes in MiB, rounded down, as nvidia-smi shows them.
pub fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("42mi"), Some(42 << 20));
        assert_eq!(parse_amount("4g"), Some(4_000_000_000));
        assert_eq!(parse_amount("44040192"), Some(44_040_192));
        assert_eq!(parse_amount("10b"), Some(10));
        assert_eq!(parse_amount("3k"), Some(3000));
        assert_eq!(parse_amount("1ki"), Some(1024));
        assert_eq!(parse_amount("2gi"), Some(2 << 30));
        for bad in [
            "4x",
            "",
            "mi",
            "-1",
            "4 g",
            "4G",
            "1.5g",
            "99999999999999999999",
            "4gib",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }
}
