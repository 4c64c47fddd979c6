//! `genv status`: the environment of this process, if any.

use crate::exit::Exit;
use crate::output::config_lines;
use genv_state::{EnvInfo, Error, Genv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Print JSON: active, eid, attached, config, mode, …
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let env = match super::current_eid()? {
        Some(eid) => Some((eid.to_string(), Genv::open()?.env(&eid))),
        None => None,
    };
    show(env, a.json);
    Ok(Exit::Success)
}

fn show(env: Option<(String, Option<EnvInfo>)>, json: bool) {
    match env {
        None => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "active": false, "mode": mode_name() })
                );
            } else {
                println!("Environment is not active");
            }
        }
        Some((eid, None)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "active": false, "eid": eid, "stale": true, "mode": mode_name() })
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
                    "mode": mode_name(),
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
            print!("{}", config_lines(&e.config, "    "));
            println!();
        }
    }
}

/// The mode in force ("shared" or "system"), as `status --json` says it.
fn mode_name() -> &'static str {
    genv_state::mode::Mode::current().map_or("shared", |m| m.name())
}
