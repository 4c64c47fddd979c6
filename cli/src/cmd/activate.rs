//! `genv activate`: creates (or joins) an environment for the shell and prints the code that
//! makes the shell part of it.

use crate::exit::Exit;
use crate::shell::{self, ShellArgs, ShellCall};
use crate::values::{checked, Checked};
use genv_state::{home, Caller, Capacity, Config, DeviceCount, EnvId, Error, Genv, Input, Name};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Environment identifier (default: the shell's pid); an existing one of yours is joined
    #[arg(long, value_parser = checked(EnvId::parse_os))]
    id: Option<Checked<EnvId>>,
    /// Environment name
    #[arg(long, value_parser = checked(Name::parse_os))]
    name: Option<Checked<Name>>,
    /// Device count
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceCount::parse_os))]
    gpus: Option<Checked<DeviceCount>>,
    /// GPU memory capacity per device, e.g. 4g, 42mi
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
    #[arg(long)]
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

pub fn run(caller: &Caller, a: Request) -> Result<Exit, Error> {
    let sh = a.shell;
    if super::current_eid()?.is_some() {
        return Err(Error::AlreadyActive);
    }
    let mut config = Config::default();
    if !a.no_load {
        if let Some(h) = std::env::current_dir()
            .ok()
            .and_then(|d| home::find_home(&d))
        {
            config = home::load(&h)?;
        }
    }
    config.overlay(&a.flags);
    let eid = match a.id {
        Some(id) => id,
        None => EnvId::parse(&sh.pid.to_string())?,
    };
    let shim = shell::shim_path()?;
    let genv = Genv::open()?;
    let gpus_list;
    let attach = if !a.no_attach && config.gpus.is_some() {
        gpus_list = genv.machine_gpus()?;
        Some((gpus_list.as_slice(), a.over_subscribe))
    } else {
        None
    };
    let env = genv.activate(caller, &eid, sh.pid, &config, attach)?;
    print!(
        "{}",
        shell::activate_code(
            sh.dialect,
            &env.eid,
            &shim,
            env.name.as_deref(),
            env.member.as_deref(),
            !a.no_prompt
        )
    );
    Ok(Exit::Success)
}
