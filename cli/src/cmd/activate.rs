//! `genv activate`: creates (or joins) an environment for the shell and prints the code that
//! makes the shell part of it.

use crate::exit::Exit;
use crate::shell::{self, ShellArgs, ShellCall};
use crate::values::{checked, Checked};
use genv_state::{
    AttachOutcome, Caller, Capacity, Config, DeviceCount, EnvId, Error, Genv, Input, Name,
};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Environment identifier (default: the shell's pid); an existing one of yours is joined
    #[arg(long, visible_alias = "eid", value_parser = checked(EnvId::parse_os))]
    id: Option<Checked<EnvId>>,
    /// Environment name
    #[arg(long, value_parser = checked(Name::parse_os))]
    name: Option<Checked<Name>>,
    /// Device count
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceCount::parse_os))]
    gpus: Option<Checked<DeviceCount>>,
    /// GPU memory capacity per device, e.g. 4g, 4GiB, 42mi
    #[arg(long, value_parser = checked(Capacity::parse_os))]
    gpu_memory: Option<Checked<Capacity>>,
    /// Do not load the configuration saved in .genv/
    #[arg(long)]
    no_load: bool,
    /// Do not attach devices even when a device count is configured
    #[arg(long)]
    no_attach: bool,
    /// Leave the shell prompt alone
    #[arg(long)]
    no_prompt: bool,
    /// Allow sharing devices with other over-subscribed environments
    #[arg(short = 'o', long)]
    over_subscribe: bool,
    #[command(flatten)]
    sh: ShellArgs,
}

/// `activate`, checked.
#[derive(Debug)]
pub struct Request {
    pub id: Option<EnvId>,
    /// What the options set, over the saved configuration.
    pub flags: Config,
    pub no_load: bool,
    pub no_attach: bool,
    pub no_prompt: bool,
    pub over_subscribe: bool,
    pub shell: ShellCall,
}

impl Args {
    pub fn check(self) -> Result<Request, Error> {
        let shell = self.sh.check("activate")?;
        Ok(Request {
            id: Checked::opt(self.id)?,
            flags: super::config(self.name, self.gpus, self.gpu_memory)?,
            no_load: self.no_load,
            no_attach: self.no_attach,
            no_prompt: self.no_prompt,
            over_subscribe: self.over_subscribe,
            shell,
        })
    }
}

/// Activates; attaching follows the configuration: a device count given on the command line
/// (`--gpus N`) is all or nothing — no environment is left behind when it cannot be met — while
/// one loaded from `.genv/` is tried, as usage.rst says: when it cannot be met, the environment
/// stays active and detached, one line says why and what to do, and the status is
/// [`Exit::ActiveDetached`] (3), so that `genv activate && train` stops while the shell, which
/// evals the code on 0 and 3, is in the environment.
pub fn run(caller: &Caller, a: Request) -> Result<Exit, Error> {
    let sh = a.shell;
    if super::current_eid()?.is_some() {
        return Err(Error::AlreadyActive);
    }
    let config = super::load_config(&a.flags, a.no_load)?;
    let eid = match a.id {
        Some(id) => id,
        None => EnvId::parse(&sh.pid.to_string())?,
    };
    let shim = shell::shim_path()?;
    let genv = Genv::open()?;
    let attach = !a.no_attach && config.gpus.is_some();
    let required = attach && a.flags.gpus.is_some();
    let env = if required {
        let gpus = genv.machine_gpus()?;
        genv.activate(
            caller,
            &eid,
            sh.pid,
            &config,
            Some((&gpus, a.over_subscribe)),
        )?
    } else {
        genv.activate(caller, &eid, sh.pid, &config, None)?
    };
    let mut exit = Exit::Success;
    if attach && !required {
        let tried = genv
            .machine_gpus()
            .and_then(|gpus| genv.attach(caller, &env.eid, &gpus, None, a.over_subscribe));
        let failure = match tried {
            Ok(AttachOutcome::Attached(_)) => None,
            Ok(AttachOutcome::Failed(msg)) => Some(msg),
            Err(e) => Some(e.to_string()),
        };
        if let Some(msg) = failure {
            eprintln!(
                "{}; the environment is active and detached: `genv devices` shows what is \
                 free, then `genv attach`; activate with --no-attach to skip attaching",
                crate::args::error_line(&Error::Unavailable(msg))
            );
            exit = Exit::ActiveDetached;
        }
    }
    if let Some(line) = super::visible_devices_notice(&genv, &env.eid) {
        eprintln!("{line}");
    }
    print!(
        "{}",
        shell::activate_code(
            sh.dialect,
            &env.eid,
            &shim,
            &env.config,
            env.member.as_deref(),
            !a.no_prompt
        )
    );
    Ok(exit)
}
