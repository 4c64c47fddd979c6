//! What the commands' tables share, in the original genv's formats.

use clap::ValueEnum;
use genv_state::Config;

/// How `envs` and `devices` print their tables, with the original genv's names.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for reading (columns widen for longer values)
    #[default]
    Tui,
    /// Comma-separated values, quoted as RFC 4180 says where a value holds a comma or a quote
    Csv,
}

/// The table options `envs` and `devices` share (and their `ps` forms), as the original genv
/// named them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TableArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Do not print the column headers
    #[arg(long)]
    pub no_header: bool,
    /// Print times as timestamps, day/month/year hours:minutes:seconds in local time as the
    /// original genv prints them, instead of relative ones
    #[arg(long)]
    pub timestamp: bool,
}

impl TableArgs {
    /// A time of the table, as these options ask.
    pub fn time(&self, ms: u64, now_ms: u64) -> String {
        if self.timestamp {
            timestamp(ms)
        } else {
            relative(ms, now_ms)
        }
    }
}

/// A table: the header's cells with their least widths (the original genv's), and the rows.
/// In `tui` a column is as wide as its widest cell plus one space, at least its least width
/// (so a 52-character Ray id keeps the columns aligned); the last column is not padded.
pub struct Table {
    pub header: Vec<(&'static str, usize)>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn render(&self, a: &TableArgs) -> String {
        let mut rows: Vec<Vec<&str>> = Vec::with_capacity(self.rows.len() + 1);
        if !a.no_header {
            rows.push(self.header.iter().map(|(h, _)| *h).collect());
        }
        rows.extend(
            self.rows
                .iter()
                .map(|r| r.iter().map(String::as_str).collect()),
        );
        let mut out = String::new();
        match a.format {
            Format::Csv => {
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| csv_cell(c)).collect();
                    out += &cells.join(",");
                    out.push('\n');
                }
            }
            Format::Tui => {
                let widths: Vec<usize> = self
                    .header
                    .iter()
                    .enumerate()
                    .map(|(i, (_, least))| {
                        let widest = rows
                            .iter()
                            .filter_map(|r| r.get(i))
                            .map(|c| c.chars().count() + 1)
                            .max()
                            .unwrap_or(0);
                        widest.max(*least)
                    })
                    .collect();
                for r in rows {
                    let mut line = String::new();
                    for (i, c) in r.iter().enumerate() {
                        if i + 1 == r.len() {
                            line += c;
                        } else {
                            line += &format!("{c:<w$}", w = widths[i]);
                        }
                    }
                    out += line.trim_end();
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// One CSV value: quoted (with `"` doubled) when it holds a comma or a quote.
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A time in the original genv's format, `%d/%m/%Y %H:%M:%S` in local time.
pub fn timestamp(ms: u64) -> String {
    let t = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::new();
    }
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        tm.tm_mday,
        tm.tm_mon + 1,
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

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

fn na<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "N/A".into())
}

/// The configuration's fields that are set, `field: value` a line, as the original genv's
/// `genv config` prints them (and scripts parse them).
pub fn config_fields(c: &Config) -> String {
    let mut out = String::new();
    if let Some(m) = &c.gpu_memory {
        out += &format!("gpu-memory: {m}\n");
    }
    if let Some(g) = &c.gpus {
        out += &format!("gpus: {g}\n");
    }
    if let Some(n) = &c.name {
        out += &format!("name: {n}\n");
    }
    out
}

/// The configuration's fields, one line each, as `status` lists them.
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
    fn tables_widen_for_long_values_and_quote_csv() {
        let t = Table {
            header: vec![("ID", 4), ("NAME", 6), ("PIDS", 0)],
            rows: vec![
                vec!["1".into(), "a".into(), "7".into()],
                vec!["a-long-id".into(), "x,\"y".into(), "8 9".into()],
                vec!["2".into(), "".into(), "".into()],
            ],
        };
        let tui = TableArgs::default();
        assert_eq!(
            t.render(&tui),
            "ID        NAME  PIDS\n1         a     7\na-long-id x,\"y  8 9\n2\n"
        );
        let csv = TableArgs {
            format: Format::Csv,
            no_header: true,
            timestamp: false,
        };
        assert_eq!(t.render(&csv), "1,a,7\na-long-id,\"x,\"\"y\",8 9\n2,,\n");
    }
}
