//! `genv lock -- CMD…`: runs a command with exclusive use of the environment's devices among
//! the environments sharing them (see genv_state::lock for the protocol).

use super::exec::run_command;
use crate::exit::Exit;
use genv_state::{lock, Error, Genv};
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
        Some(eid) => lock::lock_env(&Genv::open()?, &eid, &mut || Ok(()))?,
        None => lock::DeviceLock::none(),
    };
    let mut cmd = Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    // As in `genv exec`: Ctrl-C is for the command; we stay to release the lock after it.
    let exit = run_command(cmd, &a.command[0]);
    drop(held);
    exit
}
