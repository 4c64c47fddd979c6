//! `genv exec`: one command in a fresh environment, without any shell integration.

use crate::exit::Exit;
use crate::shell;
use crate::values::{checked, Checked};
use genv_state::text::quote_os;
use genv_state::{
    AttachOutcome, Caller, Capacity, Config, DeviceCount, DeviceIndex, EnvId, Error, Genv, Input,
    Name,
};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Environment name
    #[arg(long, value_parser = checked(Name::parse_os))]
    name: Option<Checked<Name>>,
    /// Device count
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceCount::parse_os))]
    gpus: Option<Checked<DeviceCount>>,
    /// GPU memory capacity per device, e.g. 4g, 4GiB, 42mi
    #[arg(long, allow_hyphen_values = true, value_parser = checked(Capacity::parse_os))]
    gpu_memory: Option<Checked<Capacity>>,
    /// Attach this device (repeatable)
    #[arg(long, value_parser = checked(DeviceIndex::parse_os))]
    index: Vec<Checked<DeviceIndex>>,
    /// Allow sharing devices with other over-subscribed environments
    #[arg(short = 'o', long)]
    over_subscribe: bool,
    /// Do not load the configuration saved in .genv/
    #[arg(long)]
    no_load: bool,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// `exec`, checked.
#[derive(Debug)]
pub struct Request {
    /// What the options set, over the saved configuration.
    pub flags: Config,
    pub no_load: bool,
    pub index: Vec<DeviceIndex>,
    pub over_subscribe: bool,
    pub command: Vec<OsString>,
}

impl Args {
    pub fn check(self) -> Result<Request, Error> {
        Ok(Request {
            flags: super::config(self.name, self.gpus, self.gpu_memory)?,
            no_load: self.no_load,
            index: self
                .index
                .into_iter()
                .map(Checked::get)
                .collect::<Result<_, _>>()?,
            over_subscribe: self.over_subscribe,
            command: self.command,
        })
    }
}

/// The configuration is `activate`'s (the project's `.genv/` unless `--no-load`, the options
/// over it), except that devices named with `--index` replace a saved device count. Attaching is
/// all or nothing, also for a saved count: the command is not started without its GPUs.
pub fn run(caller: &Caller, a: Request) -> Result<Exit, Error> {
    let mut config = super::load_config(&a.flags, a.no_load)?;
    if !a.index.is_empty() {
        config.gpus = a.flags.gpus;
    }
    let (over, command) = (a.over_subscribe, a.command);
    let shim = shell::shim_path()?;
    let genv = Genv::open()?;
    let pid = std::process::id();
    let eid = EnvId::parse(&format!("exec-{pid}"))?;
    let needs_devices = config.gpus.is_some() || !a.index.is_empty();
    let gpus = if needs_devices {
        genv.machine_gpus()?
    } else {
        Vec::new()
    };
    let attach = config.gpus.is_some().then_some((gpus.as_slice(), over));
    let env = genv.activate(caller, &eid, pid, &config, attach)?;
    // From here on the environment exists: leave it on every path out.
    let result = (|| -> Result<Exit, Error> {
        for ix in &a.index {
            let at = Some(ix.get());
            if let AttachOutcome::Failed(m) = genv.attach(caller, &eid, &gpus, at, over)? {
                return Err(Error::Unavailable(m));
            }
        }
        if let Some(line) = super::visible_devices_notice(&genv, eid.as_str()) {
            eprintln!("{line}");
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
        for (k, v) in shell::config_vars(&env.config) {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        match &env.member {
            Some(m) => cmd.env(genv_state::members::VAR, m),
            None => cmd.env_remove(genv_state::members::VAR),
        };
        run_command(cmd, &command[0])
    })();
    // The environment ends with its last member: now, unless processes the command started
    // run on (a job it put in the background, a daemon), which keep it and its devices.
    let left = genv.deactivate(caller, &eid, pid);
    let exit = result?;
    left?;
    Ok(exit)
}

/// Runs `cmd` (`name` for the error message) to completion like system(3): while it runs,
/// Ctrl-C and Ctrl-\ are for it, and we live to clean up afterwards (remove the environment,
/// release a lock); the child gets the default dispositions back. Its status is ours.
pub fn run_command(mut cmd: Command, name: &OsStr) -> Result<Exit, Error> {
    // SAFETY: signal(2) with SIG_IGN installs no handler of ours. In the child, between fork
    // and exec, signal(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    match cmd.status() {
        Ok(status) => Ok(Exit::of_child(status)),
        // The shell's statuses for a command it could not run: 127 not found, 126 found but
        // not executable, so that scripts tell them from the command's own failures.
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => return Err(Error::Input(format!("cannot run {}: {e}", quote_os(name)))),
            };
            eprintln!(
                "{}",
                crate::args::error_line(&Error::Input(format!(
                    "cannot run {}: {e}",
                    quote_os(name)
                )))
            );
            Ok(Exit::Child(code))
        }
    }
}
