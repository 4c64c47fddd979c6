//! `genv lock -- CMD…`: runs a command with exclusive use of the environment's devices among
//! the environments sharing them (see genv_state::lock for the protocol).

use genv_state::{lock, EnvId, Error, Genv};
use std::ffi::OsString;
use std::process::{Command, ExitCode};

pub fn run(eid: Option<EnvId>, command: Vec<OsString>) -> Result<ExitCode, Error> {
    // Outside an environment there is nothing to lock: the command just runs.
    let held = match eid {
        Some(eid) => lock::lock_env(&Genv::open()?, &eid, &mut || Ok(()))?,
        None => lock::DeviceLock::none(),
    };
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    // As in `genv exec`: Ctrl-C is for the command; we stay to release the lock after it.
    let code = crate::exec::run_command(cmd, &command[0]);
    drop(held);
    code
}
