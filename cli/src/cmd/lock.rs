//! `genv lock -- CMD…`: runs a command with exclusive use of the environment's devices among
//! the environments sharing them (see genv_state::lock for the protocol).

use super::exec::run_command;
use crate::exit::Exit;
use genv_state::text::quote;
use genv_state::{lock, procfs, Error, Genv};
use std::ffi::OsString;
use std::process::Command;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<OsString>,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    // Outside an environment there is nothing to lock: the command just runs.
    let held = match super::current_eid()? {
        Some(eid) => {
            let genv = Genv::open()?;
            // Said once, when it has to wait; nothing when the devices are free.
            lock::lock_env_telling(&genv, &eid, &mut || Ok(()), &mut |waits| {
                eprintln!("{}", waiting_line(&genv, waits));
            })?
        }
        None => lock::DeviceLock::none(),
    };
    let mut cmd = Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    // As in `genv exec`: Ctrl-C is for the command; we stay to release the lock after it.
    let exit = run_command(cmd, &a.command[0]);
    drop(held);
    exit
}

/// `genv: waiting for GPU 0 (held by environment 1234 "train" of alice) and …`: the devices
/// (NVML indices, as `genv devices` shows them) and who holds them.
fn waiting_line(genv: &Genv, waits: &[lock::Wait]) -> String {
    if waits.is_empty() {
        // Released between the wait and the look: the wait is about to end.
        return "genv: waiting for the lock of this environment's GPUs".into();
    }
    let envs = genv.envs();
    let who = |h: &lock::Holder| {
        let env = envs.iter().find(|e| e.eid == h.eid && e.uid == h.uid);
        let user = env.map_or_else(|| procfs::user_name(h.uid), |e| e.username.clone());
        match env.and_then(|e| e.name.as_deref()) {
            Some(name) => format!("environment {} {} of {user}", quote(&h.eid), quote(name)),
            None => format!("environment {} of {user}", quote(&h.eid)),
        }
    };
    let parts: Vec<String> = waits
        .iter()
        .map(|w| {
            let holders: Vec<String> = w.holders.iter().map(who).collect();
            let by = if w.exact {
                "held by"
            } else {
                "the genv service keeps its lock; attached also to"
            };
            format!("GPU {} ({by} {})", w.device, holders.join(", "))
        })
        .collect();
    format!("genv: waiting for {}", parts.join(" and "))
}
