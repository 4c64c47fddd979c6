//! `genv envs`: the live environments, oldest first.

use crate::exit::Exit;
use crate::output::{col, relative};
use genv_state::layout::now_ms;
use genv_state::{EnvInfo, Error, Genv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    show(&Genv::open()?.envs(), a.json);
    Ok(Exit::Success)
}

fn show(envs: &[EnvInfo], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(envs).expect("serialises")
        );
        return;
    }
    let now = now_ms();
    // One write for the whole table, not one per row: there may be thousands of rows.
    let mut out = String::new();
    out += "ID      USER            NAME            CREATED              PID(S)\n";
    for e in envs {
        // Its activating processes first (shells, `genv exec`), then every other process that
        // keeps it alive: the programs started in it, and GPU users (the SDK's own process).
        let mut pids = e.pids.clone();
        for p in e.members.iter().chain(&e.processes) {
            if !pids.contains(p) {
                pids.push(*p);
            }
        }
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
