//! One module per command: its arguments (clap) and what it does.

pub mod activate;
pub mod admin;
pub mod attach;
pub mod config;
pub mod daemon;
pub mod deactivate;
pub mod detach;
pub mod devices;
pub mod enforce;
pub mod envs;
pub mod exec;
pub mod home;
pub mod kernel;
pub mod lock;
pub mod shell_init;
pub mod status;

use crate::exit::Exit;
use crate::shell::ShellCall;
use crate::values::Checked;
use clap::Subcommand;
use genv_state::{Caller, Capacity, Config, DeviceCount, DeviceIndex, EnvId, Error, Input, Name};

#[derive(Subcommand)]
pub enum Cmd {
    /// Activate an environment in this shell (detached from all GPUs until attached)
    Activate(activate::Args),
    /// Deactivate the environment of this shell
    Deactivate(deactivate::Args),
    /// Print the status of the current environment
    Status(status::Args),
    /// Print or change the configuration of the current environment
    Config(config::Args),
    /// Print the .genv/ directory that applies here
    Home(home::Args),
    /// Attach the current environment to devices
    Attach(attach::Args),
    /// Detach the current environment from devices
    Detach(detach::Args),
    /// List the active environments
    Envs(envs::Args),
    /// List the devices and their attachments
    Devices(devices::Args),
    /// Run one command in a fresh environment, removed when the command exits
    Exec(exec::Args),
    /// Run a command with exclusive use of the attached devices among the environments sharing
    /// them (waits while another environment holds them; nothing to lock outside an environment)
    Lock(lock::Args),
    /// Print the shell integration for your rc file (a `genv` function and tab completions)
    ShellInit(shell_init::Args),
    /// The environment's variables as shell code (for the shell integration)
    #[command(hide = true)]
    ShellVars(shell_init::VarsArgs),
    /// Install or remove a Jupyter kernelspec whose kernels run each in a fresh environment
    #[command(subcommand)]
    Kernel(kernel::Args),
    /// Install or remove the system mode (root)
    #[command(subcommand)]
    Admin(admin::Args),
    /// The system mode's service (started by its systemd unit)
    #[command(hide = true)]
    Daemon(daemon::Args),
    /// Act on processes that break the policy (root): outside environments, on devices not
    /// attached, over capacity, over a user's quota
    Enforce(enforce::Args),
}

/// A command line that passed every check that needs neither the state nor the machine.
#[derive(Debug)]
pub enum Command {
    Activate(activate::Request),
    Deactivate(ShellCall),
    Status(status::Args),
    Config(config::Request),
    Home(home::Args),
    Attach(attach::Request),
    Detach(Option<DeviceIndex>),
    Envs(envs::Args),
    Devices(devices::Args),
    Exec(exec::Request),
    Lock(lock::Args),
    ShellInit(shell_init::Args),
    ShellVars(shell_init::VarsArgs),
    Kernel(kernel::Args),
    Admin(admin::Args),
    Daemon(daemon::Args),
    Enforce(enforce::Args),
}

impl Cmd {
    /// What clap cannot check: the arguments that must or must not go together.
    pub fn check(self) -> Result<Command, Error> {
        Ok(match self {
            Cmd::Activate(a) => Command::Activate(a.check()?),
            Cmd::Deactivate(a) => Command::Deactivate(a.check()?),
            Cmd::Status(a) => Command::Status(a),
            Cmd::Config(a) => Command::Config(a.check()?),
            Cmd::Home(a) => Command::Home(a),
            Cmd::Attach(a) => Command::Attach(a.check()?),
            Cmd::Detach(a) => Command::Detach(a.check()?),
            Cmd::Envs(a) => Command::Envs(a),
            Cmd::Devices(a) => Command::Devices(a),
            Cmd::Exec(a) => Command::Exec(a.check()?),
            Cmd::Lock(a) => Command::Lock(a),
            Cmd::ShellInit(a) => Command::ShellInit(a),
            Cmd::ShellVars(a) => Command::ShellVars(a),
            Cmd::Kernel(a) => Command::Kernel(a),
            Cmd::Admin(a) => Command::Admin(a),
            Cmd::Daemon(a) => Command::Daemon(a),
            Cmd::Enforce(a) => Command::Enforce(a),
        })
    }
}

pub fn run(cmd: Command) -> Result<Exit, Error> {
    let caller = Caller::current();
    match cmd {
        Command::Activate(r) => activate::run(&caller, r),
        Command::Deactivate(sh) => deactivate::run(&caller, sh),
        Command::Status(a) => status::run(a),
        Command::Config(r) => config::run(&caller, r),
        Command::Home(a) => home::run(a),
        Command::Attach(r) => attach::run(&caller, r),
        Command::Detach(index) => detach::run(&caller, index),
        Command::Envs(a) => envs::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Exec(r) => exec::run(&caller, r),
        Command::Lock(a) => lock::run(a),
        Command::ShellInit(a) => shell_init::run(a),
        Command::ShellVars(a) => shell_init::run_vars(a),
        Command::Kernel(a) => kernel::run(a),
        Command::Admin(a) => admin::run(a),
        Command::Daemon(a) => daemon::run(a),
        Command::Enforce(a) => enforce::run(a),
    }
}

/// The environment this process runs in, from `GENV_ENVIRONMENT_ID`. genv only ever sets it to
/// an environment identifier, so anything else there is refused with a line naming the
/// variable, not taken for "no environment".
fn current_eid() -> Result<Option<EnvId>, Error> {
    let Some(v) = std::env::var_os("GENV_ENVIRONMENT_ID").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    EnvId::parse_os(&v)
        .map(Some)
        .map_err(|e| Error::Input(format!("GENV_ENVIRONMENT_ID: {e}")))
}

fn require_eid() -> Result<EnvId, Error> {
    current_eid()?.ok_or(Error::NotActive)
}

/// The configuration options of `activate` and `exec`, checked in this order.
fn config(
    name: Option<Checked<Name>>,
    gpus: Option<Checked<DeviceCount>>,
    gpu_memory: Option<Checked<Capacity>>,
) -> Result<Config, Error> {
    Ok(Config {
        name: Checked::opt(name)?,
        gpus: Checked::opt(gpus)?,
        gpu_memory: Checked::opt(gpu_memory)?,
    })
}

/// The configuration a new environment of `activate` or `exec` starts with: the project's saved
/// `.genv/` (looked up from the working directory upwards) unless `no_load`, with what the
/// command line set over it. The one rule both commands follow.
fn load_config(flags: &Config, no_load: bool) -> Result<Config, Error> {
    let mut config = Config::default();
    if !no_load {
        if let Some(h) = std::env::current_dir()
            .ok()
            .and_then(|d| genv_state::home::find_home(&d))
        {
            config = genv_state::home::load(&h)?;
        }
    }
    config.overlay(flags);
    Ok(config)
}

/// One line for stderr when this process inherited a `CUDA_VISIBLE_DEVICES`: inside the
/// environment the shim reads it as a choice among the environment's GPUs (genv_state::visible),
/// not the machine's, so say which of the machine's GPUs it leaves to CUDA there now.
fn visible_devices_notice(genv: &genv_state::Genv, eid: &str) -> Option<String> {
    use genv_state::text::quote;
    let var = |k: &str| std::env::var(k).ok();
    let (cur, set, saved) = (
        var("CUDA_VISIBLE_DEVICES"),
        var("GENV_CUDA_VISIBLE_DEVICES_SET"),
        var("GENV_CUDA_VISIBLE_DEVICES_USER"),
    );
    let user = genv_state::visible::user_value(cur.as_deref(), set.as_deref(), saved.as_deref())?;
    let attached = genv.env(eid).map(|e| e.attached).unwrap_or_default();
    let devices = genv.devices();
    let uuids: Vec<&str> = attached
        .iter()
        .map(|ix| {
            devices
                .iter()
                .find(|d| d.index == *ix)
                .map_or("", |d| d.uuid.as_str())
        })
        .collect();
    let list = |ixs: &mut dyn Iterator<Item = u32>| {
        ixs.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    };
    let chosen = genv_state::visible::select(Some(user), &uuids);
    let outcome = if attached.is_empty() {
        "the environment has no GPU attached yet; it will choose among those attached when a \
         program starts CUDA"
            .to_string()
    } else if chosen.is_empty() {
        format!(
            "it names none of the {} attached (GPUs {} of the machine): CUDA will see no device",
            attached.len(),
            list(&mut attached.iter().copied())
        )
    } else {
        format!(
            "CUDA will see the machine's GPU(s) {} of the {} attached ({})",
            list(&mut chosen.iter().map(|&i| attached[i])),
            attached.len(),
            list(&mut attached.iter().copied())
        )
    };
    Some(format!(
        "genv: CUDA_VISIBLE_DEVICES={} is inherited: inside the environment it chooses among the \
         environment's GPUs (0, 1, … in attach order, or UUIDs), not the machine's; {outcome}; \
         unset it to give CUDA all of them",
        quote(user)
    ))
}
