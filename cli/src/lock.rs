//! `genv lock -- CMD…`: runs a command with exclusive use of the environment's devices among
//! the environments sharing them (see genv_state::lock for the protocol).

use genv_state::{lock, Error, Genv};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

pub fn run(eid: Option<String>, command: Vec<String>) -> Result<ExitCode, Error> {
    // Outside an environment there is nothing to lock: the command just runs.
    let held = match eid {
        Some(eid) => lock::lock_env(&Genv::open()?, &eid, &mut || Ok(()))?,
        None => lock::DeviceLock::none(),
    };
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    // As in `genv exec`: Ctrl-C is for the command; we stay to release the lock after it.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| Error::Input(format!("cannot run {:?}: {e}", command[0])))?;
    drop(held);
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig) as u8),
        _ => ExitCode::FAILURE,
    })
}
