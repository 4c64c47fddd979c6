//! `genv exec`: one command in a fresh environment, without any shell integration.

use genv_state::text::quote_os;
use genv_state::{devices, AttachOutcome, Caller, Config, EnvId, Error, Genv, Input};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

pub fn run(
    caller: &Caller,
    config: Config,
    index: Vec<u32>,
    over: bool,
    command: Vec<OsString>,
) -> Result<ExitCode, Error> {
    let shim = crate::shell::shim_path()?;
    let genv = Genv::open()?;
    let pid = std::process::id();
    let eid = EnvId::parse(&format!("exec-{pid}"))?;
    let needs_devices = config.gpus.is_some() || !index.is_empty();
    let gpus = if needs_devices {
        devices::read_gpus()?
    } else {
        Vec::new()
    };
    let attach = config.gpus.is_some().then_some((gpus.as_slice(), over));
    genv.activate(caller, &eid, pid, &config, attach)?;
    // From here on the environment exists: remove it on every path out.
    let result = (|| -> Result<ExitCode, Error> {
        for &ix in &index {
            if let AttachOutcome::Failed(m) = genv.attach(caller, &eid, &gpus, Some(ix), over)? {
                return Err(Error::Unavailable(m));
            }
        }
        // Bytes, not text: the loader takes any file name, and so do we.
        let mut preload = shim.as_os_str().as_bytes().to_vec();
        if let Some(old) = std::env::var_os("LD_PRELOAD") {
            for p in old
                .as_bytes()
                .split(|&b| b == b':' || b == b' ')
                .filter(|p| !p.is_empty() && !p.ends_with(b"libgenv_shim.so"))
            {
                preload.push(b':');
                preload.extend_from_slice(p);
            }
        }
        let preload = OsString::from_vec(preload);
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .env("LD_PRELOAD", &preload)
            .env("GENV_ENVIRONMENT_ID", eid.as_str())
            .env("GENV_SHIM_PATH", &shim)
            .env_remove("GENV_SHIM_BYPASS");
        run_command(cmd, &command[0])
    })();
    let removed = genv.remove(caller, &eid);
    let code = result?;
    removed?;
    Ok(code)
}

/// Runs `cmd` (`name` for the error message) to completion like system(3): while it runs,
/// Ctrl-C and Ctrl-\ are for it, and we live to clean up afterwards (remove the environment,
/// release a lock); the child gets the default dispositions back. The command's exit status is
/// ours, a signal `128 + signal`.
pub fn run_command(mut cmd: Command, name: &OsStr) -> Result<ExitCode, Error> {
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
        .map_err(|e| Error::Input(format!("cannot run {}: {e}", quote_os(name))))?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig) as u8),
        _ => ExitCode::FAILURE,
    })
}
