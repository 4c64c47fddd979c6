//! `genv devices`: the machine's devices and the environments attached to them; `genv devices
//! ps` and `genv devices query` are the original genv's forms.

use crate::exit::Exit;
use crate::output::{csv_cell, timestamp, Table, TableArgs};
use clap::{Subcommand, ValueEnum};
use genv_state::layout::now_ms;
use genv_state::text;
use genv_state::{DeviceInfo, EnvInfo, Error, Genv};

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
    /// Print the devices' table (the same as `genv devices`)
    Ps(TableArgs),
    /// Print the chosen fields of each device, one comma-separated line each (no header)
    Query(QueryArgs),
}

#[derive(clap::Args, Clone, Debug)]
struct QueryArgs {
    /// The fields, in order: separated by commas or given as several values
    #[arg(long, visible_alias = "queries", required = true, num_args = 1.., value_delimiter = ',', value_enum)]
    query: Vec<Field>,
}

/// What `genv devices query` can print, with the original genv's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Field {
    /// NVML index
    Index,
    /// The attached environments, space-separated
    Eids,
    /// In MiB, as `<n>mi`
    #[value(name = "total_memory")]
    TotalMemory,
    /// `eid+gpu-memory+attach-time` (spaces in the time as `_`), space-separated
    Attachments,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let genv = Genv::open()?;
    // Re-read the machine's GPUs so that a changed machine shows; without NVML the last known
    // list is shown.
    match genv.machine_gpus() {
        Ok(gpus) => genv.refresh_devices(&gpus)?,
        Err(e) => eprintln!(
            "genv: {}; showing the devices last seen",
            text::printable(&e.to_string())
        ),
    }
    let devices = genv.devices();
    match a.sub {
        None if a.json => println!(
            "{}",
            serde_json::to_string_pretty(&devices).expect("serialises")
        ),
        None => print!("{}", table(&devices, &a.table)),
        Some(Sub::Ps(t)) => print!("{}", table(&devices, &t)),
        Some(Sub::Query(q)) => print!("{}", query(&devices, &genv.envs(), &q)),
    }
    Ok(Exit::Success)
}

fn table(devices: &[DeviceInfo], a: &TableArgs) -> String {
    let now = now_ms();
    let mut rows = Vec::new();
    for d in devices {
        if d.attachments.is_empty() {
            rows.push(vec![
                d.index.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for at in &d.attachments {
            rows.push(vec![
                d.index.to_string(),
                at.eid.clone(),
                at.env_name.clone().unwrap_or_default(),
                a.time(at.attached_ms, now),
            ]);
        }
    }
    Table {
        header: vec![("ID", 8), ("ENV ID", 12), ("ENV NAME", 16), ("ATTACHED", 0)],
        rows,
    }
    .render(a)
}

fn query(devices: &[DeviceInfo], envs: &[EnvInfo], q: &QueryArgs) -> String {
    let capacity = |eid: &str| {
        envs.iter()
            .find(|e| e.eid == eid)
            .and_then(|e| e.config.gpu_memory.as_ref().map(|m| m.to_string()))
            .unwrap_or_default()
    };
    let mut out = String::new();
    for d in devices {
        let cells: Vec<String> = q
            .query
            .iter()
            .map(|f| match f {
                Field::Index => d.index.to_string(),
                Field::Eids => {
                    let eids: Vec<&str> = d.attachments.iter().map(|a| a.eid.as_str()).collect();
                    eids.join(" ")
                }
                Field::TotalMemory => format!("{}mi", genv_state::units::mib(d.total_memory)),
                Field::Attachments => {
                    let all: Vec<String> = d
                        .attachments
                        .iter()
                        .map(|a| {
                            format!(
                                "{}+{}+{}",
                                a.eid,
                                capacity(&a.eid),
                                timestamp(a.attached_ms).replace(' ', "_")
                            )
                        })
                        .collect();
                    all.join(" ")
                }
            })
            .map(|c| csv_cell(&c))
            .collect();
        out += &cells.join(",");
        out.push('\n');
    }
    out
}
