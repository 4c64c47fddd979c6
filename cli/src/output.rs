//! Tables and JSON for `status`, `envs`, `devices` and `config`, in the original genv's formats.

use genv_state::{Config, DeviceInfo, EnvInfo};

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
fn col(s: &str, width: usize) -> String {
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

pub fn status(env: Option<(String, Option<EnvInfo>)>, json: bool) {
    match env {
        None => {
            if json {
                println!("{}", serde_json::json!({ "active": false }));
            } else {
                println!("Environment is not active");
            }
        }
        Some((eid, None)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "active": false, "eid": eid, "stale": true })
                );
            } else {
                println!("Environment is not active");
                eprintln!(
                    "genv: this shell names environment {eid}, which no longer exists; run `genv deactivate`"
                );
            }
        }
        Some((_, Some(e))) => {
            if json {
                let v = serde_json::json!({
                    "active": true,
                    "eid": e.eid,
                    "attached": e.attached,
                    "config": e.config,
                });
                println!("{v}");
                return;
            }
            println!("Environment is active ({})", e.eid);
            if e.attached.is_empty() {
                println!("Detached from GPUs");
            } else {
                let ix: Vec<String> = e.attached.iter().map(|i| i.to_string()).collect();
                println!("Attached to GPUs at indices {}", ix.join(","));
            }
            println!();
            println!("Configuration");
            println!("    Name: {}", na(&e.config.name));
            println!("    Device count: {}", na(&e.config.gpus));
            println!("    GPU memory capacity: {}", na(&e.config.gpu_memory));
            println!();
        }
    }
}

pub fn envs(envs: &[EnvInfo], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(envs).expect("serialises")
        );
        return;
    }
    let now = genv_state::ops::now_ms();
    // One write for the whole table, not one per row: there may be thousands of rows.
    let mut out = String::new();
    out += "ID      USER            NAME            CREATED              PID(S)\n";
    for e in envs {
        // An environment kept alive only by its running programs lists those.
        let pids = if e.pids.is_empty() {
            &e.processes
        } else {
            &e.pids
        };
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        out += &format!(
            "{}{}{}{}{}\n",
            col(&e.eid, 8),
            col(&format!("{}({})", e.username, e.uid), 16),
            col(e.name.as_deref().unwrap_or(""), 16),
            col(&relative(e.created_ms, now), 21),
            pids.join(" ")
        );
    }
    print!("{out}");
}

pub fn devices(devices: &[DeviceInfo], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(devices).expect("serialises")
        );
        return;
    }
    let now = genv_state::ops::now_ms();
    let mut out = String::new();
    out += "ID      ENV ID      ENV NAME        ATTACHED\n";
    for d in devices {
        if d.attachments.is_empty() {
            out += &format!("{}\n", d.index);
        }
        for a in &d.attachments {
            out += &format!(
                "{}{}{}{}\n",
                col(&d.index.to_string(), 8),
                col(&a.eid, 12),
                col(a.env_name.as_deref().unwrap_or(""), 16),
                relative(a.attached_ms, now)
            );
        }
    }
    print!("{out}");
}

pub fn config(c: &Config, field: Option<&str>, json: bool) {
    if json {
        let v = match field {
            None => serde_json::to_value(c).expect("serialises"),
            Some("gpus") => serde_json::json!(c.gpus),
            Some("gpu-memory") => serde_json::json!(c.gpu_memory),
            Some(_) => serde_json::json!(c.name),
        };
        println!("{v}");
        return;
    }
    match field {
        Some("gpus") => {
            if let Some(g) = c.gpus {
                println!("{g}");
            }
        }
        Some("gpu-memory") => {
            if let Some(m) = &c.gpu_memory {
                println!("{m}");
            }
        }
        Some(_) => {
            if let Some(n) = &c.name {
                println!("{n}");
            }
        }
        None => {
            println!("Name: {}", na(&c.name));
            println!("Device count: {}", na(&c.gpus));
            println!("GPU memory capacity: {}", na(&c.gpu_memory));
        }
    }
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
