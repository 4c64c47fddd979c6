//! `genv devices`: the machine's devices and the environments attached to them.

use crate::exit::Exit;
use crate::output::{col, relative};
use genv_state::layout::now_ms;
use genv_state::text;
use genv_state::{DeviceInfo, Error, Genv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[arg(long)]
    json: bool,
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
    show(&genv.devices(), a.json);
    Ok(Exit::Success)
}

fn show(devices: &[DeviceInfo], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(devices).expect("serialises")
        );
        return;
    }
    let now = now_ms();
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
