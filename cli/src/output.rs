//! What the commands' tables share, in the original genv's formats.

use genv_state::Config;

/// "7 hours ago", "27 minutes ago", "just now".
pub fn relative(ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ms) / 1000;
    let (n, unit) = match s {
        0..=4 => return "just now".to_string(),
        5..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Left-aligns `s` in `width` columns, keeping at least one space before the next column.
pub fn col(s: &str, width: usize) -> String {
    if s.chars().count() >= width {
        format!("{s} ")
    } else {
        format!("{s:<width$}")
    }
}

fn na<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "N/A".into())
}

/// The configuration's fields, one line each, as `status` (indented) and `config` list them.
pub fn config_lines(c: &Config, indent: &str) -> String {
    format!(
        "{indent}Name: {}\n{indent}Device count: {}\n{indent}GPU memory capacity: {}\n",
        na(&c.name),
        na(&c.gpus),
        na(&c.gpu_memory)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 10_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - 30_000, now), "30 seconds ago");
        assert_eq!(relative(now - 60_000, now), "1 minute ago");
        assert_eq!(relative(now - 27 * 60_000, now), "27 minutes ago");
        assert_eq!(relative(now - 7 * 3_600_000, now), "7 hours ago");
        assert_eq!(relative(now - 2 * 86_400_000, now), "2 days ago");
    }

    #[test]
    fn columns() {
        assert_eq!(col("1573", 8), "1573    ");
        assert_eq!(col("a-very-long-name!", 16), "a-very-long-name! ");
    }
}
