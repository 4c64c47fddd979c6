//! `genv envs`: the live environments, oldest first; `genv envs ps` and `genv envs query` are
//! the original genv's forms (the same table; chosen fields as CSV lines).

use crate::exit::Exit;
use crate::output::{csv_cell, timestamp, Table, TableArgs};
use clap::{Subcommand, ValueEnum};
use genv_state::layout::now_ms;
use genv_state::{EnvInfo, Error, Genv};

#[derive(clap::Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    table: TableArgs,
    /// Print JSON (every field) instead of the table
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Clone, Debug)]
enum Sub {
    /// Print the environments' table (the same as `genv envs`)
    Ps(TableArgs),
    /// Print the chosen fields of each environment, one comma-separated line each (no header)
    Query(QueryArgs),
}

#[derive(clap::Args, Clone, Debug)]
struct QueryArgs {
    /// The fields, in order: separated by commas or given as several values
    #[arg(long, visible_alias = "queries", required = true, num_args = 1.., value_delimiter = ',', value_enum)]
    query: Vec<Field>,
    /// Only this environment
    #[arg(long)]
    eid: Option<String>,
}

/// What `genv envs query` can print, with the original genv's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Field {
    Eid,
    /// Created, as `--timestamp` prints it
    Creation,
    Uid,
    Username,
    #[value(name = "config.name")]
    ConfigName,
    #[value(name = "config.gpus")]
    ConfigGpus,
    #[value(name = "config.gpu_memory", alias = "config.gpu-memory")]
    ConfigGpuMemory,
    /// Space-separated
    Pids,
    /// Jupyter kernel ids of the original genv: always empty here (a kernel runs under
    /// `genv exec`, its pid is in `pids`)
    #[value(name = "kernel_ids")]
    KernelIds,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let envs = Genv::open()?.envs();
    match a.sub {
        None if a.json => println!(
            "{}",
            serde_json::to_string_pretty(&envs).expect("serialises")
        ),
        None => print!("{}", table(&envs, &a.table)),
        Some(Sub::Ps(t)) => print!("{}", table(&envs, &t)),
        Some(Sub::Query(q)) => print!("{}", query(&envs, &q)),
    }
    Ok(Exit::Success)
}

/// Its activating processes first (shells, `genv exec`), then every other process that keeps
/// it alive: the programs started in it, and GPU users (the SDK's own process).
fn pids(e: &EnvInfo) -> String {
    let mut pids = e.pids.clone();
    for p in e.members.iter().chain(&e.processes) {
        if !pids.contains(p) {
            pids.push(*p);
        }
    }
    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    pids.join(" ")
}

fn table(envs: &[EnvInfo], a: &TableArgs) -> String {
    let now = now_ms();
    Table {
        header: vec![
            ("ID", 8),
            ("USER", 16),
            ("NAME", 16),
            ("CREATED", 21),
            ("PID(S)", 0),
        ],
        rows: envs
            .iter()
            .map(|e| {
                vec![
                    e.eid.clone(),
                    format!("{}({})", e.username, e.uid),
                    e.name.clone().unwrap_or_default(),
                    a.time(e.created_ms, now),
                    pids(e),
                ]
            })
            .collect(),
    }
    .render(a)
}

fn query(envs: &[EnvInfo], q: &QueryArgs) -> String {
    let mut out = String::new();
    for e in envs.iter().filter(|e| match &q.eid {
        Some(x) => *x == e.eid,
        None => true,
    }) {
        let cells: Vec<String> = q
            .query
            .iter()
            .map(|f| match f {
                Field::Eid => e.eid.clone(),
                Field::Creation => timestamp(e.created_ms),
                Field::Uid => e.uid.to_string(),
                Field::Username => e.username.clone(),
                Field::ConfigName => e
                    .config
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                Field::ConfigGpus => e.config.gpus.map(|g| g.to_string()).unwrap_or_default(),
                Field::ConfigGpuMemory => e
                    .config
                    .gpu_memory
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                Field::Pids => pids(e),
                Field::KernelIds => String::new(),
            })
            .map(|c| csv_cell(&c))
            .collect();
        out += &cells.join(",");
        out.push('\n');
    }
    out
}
