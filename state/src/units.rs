//! Memory amounts as users write them: a number (whole, or with a decimal point when the result
//! is a whole number of bytes) and an optional unit, in any letter case: `b`; `k`, `m`, `g`, `t`
//! (powers of 1000); `ki`, `mi`, `gi`, `ti` or `kib`, `mib`, `gib`, `tib` (powers of 1024).
//! `kb`, `mb`, `gb`, `tb` are refused: people use them for both powers.

/// What `gpu-memory` accepts, for error messages.
pub const UNITS_HELP: &str = "a number with an optional unit b, k, m, g, t (powers of 1000) or \
     ki, mi, gi, ti, also written KiB, MiB, GiB, TiB (powers of 1024), in any case, e.g. 42mi, \
     4g, 4GiB, 1.5g, 44040192";

/// Parses an amount such as `42mi`, `4G`, `4GiB`, `1.5g` or `44040192` into bytes.
pub fn parse_amount(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    // Exact: digits as one integer scaled by the unit, then divided by 10^(fraction digits).
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let scaled = digits.checked_mul(mult)?;
    if scaled % scale != 0 {
        return None;
    }
    u64::try_from(scaled / scale).ok()
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
        assert_eq!(parse_amount("4G"), Some(4_000_000_000));
        assert_eq!(parse_amount("4GiB"), Some(4 << 30));
        assert_eq!(parse_amount("4gib"), Some(4 << 30));
        assert_eq!(parse_amount("1.5g"), Some(1_500_000_000));
        assert_eq!(parse_amount("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_amount("0.5k"), Some(500));
        assert_eq!(parse_amount("2T"), Some(2_000_000_000_000));
        assert_eq!(parse_amount("1B"), Some(1));
        for bad in [
            "4x",
            "",
            "mi",
            "-1",
            "4 g",
            "4GB",
            "4mb",
            "1.5",
            "1.5b",
            "1.",
            ".5g",
            "1.2.3g",
            "99999999999999999999",
            "1e9",
            "4gibb",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }
}
