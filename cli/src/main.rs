//! The `genv` command line: thin presentation over `genv_state` (every state change lives there).

mod args;
mod exec;
mod lock;
mod output;
mod shell;

use args::{Command, ConfigCmd, Field, Outcome, Value};
use genv_state::text::{self, quote_path};
use genv_state::{devices, home, AttachOutcome, Caller, Config, EnvId, Error, Genv, Input};
use std::process::ExitCode;

fn fail(e: Error) -> ExitCode {
    eprintln!("{}", args::error_line(&e));
    ExitCode::FAILURE
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

fn main() -> ExitCode {
    // The shim must leave the genv CLI alone: it sees the real machine, also inside an
    // environment. The shim checks this lazily, so setting it before any NVML use suffices.
    std::env::set_var("GENV_SHIM_BYPASS", "1");
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cmd = match args::parse(std::env::args_os().collect()) {
        Outcome::Run(c) => c,
        Outcome::Show(e) => e.exit(),
        Outcome::ShowOnStderr(text) => {
            eprint!("{text}");
            return ExitCode::SUCCESS;
        }
        Outcome::Refuse { line, code } => {
            eprintln!("{line}");
            return ExitCode::from(code);
        }
    };
    match run(cmd) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn run(cmd: Command) -> Result<ExitCode, Error> {
    let caller = Caller::current();
    match cmd {
        Command::Activate {
            id,
            flags,
            no_load,
            no_attach,
            no_prompt,
            over_subscribe,
            dialect,
            shell_pid,
        } => {
            if current_eid()?.is_some() {
                return Err(Error::AlreadyActive);
            }
            let mut config = Config::default();
            if !no_load {
                if let Some(h) = std::env::current_dir()
                    .ok()
                    .and_then(|d| home::find_home(&d))
                {
                    config = home::load(&h)?;
                }
            }
            config.overlay(&flags);
            let eid = match id {
                Some(id) => id,
                None => EnvId::parse(&shell_pid.to_string())?,
            };
            let shim = shell::shim_path()?;
            let genv = Genv::open()?;
            let gpus_list;
            let attach = if !no_attach && config.gpus.is_some() {
                gpus_list = devices::read_gpus()?;
                Some((gpus_list.as_slice(), over_subscribe))
            } else {
                None
            };
            let env = genv.activate(&caller, &eid, shell_pid, &config, attach)?;
            print!(
                "{}",
                shell::activate_code(dialect, &env.eid, &shim, env.name.as_deref(), !no_prompt)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Deactivate { dialect, shell_pid } => {
            let eid = require_eid()?;
            let genv = Genv::open()?;
            genv.deactivate(&caller, &eid, shell_pid)?;
            print!("{}", shell::deactivate_code(dialect));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let env = match current_eid()? {
                Some(eid) => Some((eid.to_string(), Genv::open()?.env(&eid))),
                None => None,
            };
            output::status(env, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(c) => config_cmd(&caller, c),
        Command::Home => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::Input(format!("cannot read the working directory: {e}")))?;
            match home::find_home(&cwd) {
                Some(h) => {
                    println!("{}", h.display());
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(Error::Input(format!(
                    "no .genv directory in {} or its parents, nor in ~: create one with `mkdir -p .genv`",
                    quote_path(&cwd)
                ))),
            }
        }
        Command::Attach {
            index,
            over_subscribe,
        } => {
            let eid = require_eid()?;
            let genv = Genv::open()?;
            let gpus = devices::read_gpus()?;
            match genv.attach(&caller, &eid, &gpus, index, over_subscribe)? {
                AttachOutcome::Attached(_) => Ok(ExitCode::SUCCESS),
                AttachOutcome::Failed(msg) => Err(Error::Unavailable(msg)),
            }
        }
        Command::Detach { index } => {
            let eid = require_eid()?;
            Genv::open()?.detach(&caller, &eid, index)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Envs { json } => {
            let genv = Genv::open()?;
            output::envs(&genv.envs(), json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Devices { json } => {
            let genv = Genv::open()?;
            // Re-read the machine's GPUs so that a changed machine shows; without NVML the last
            // known list is shown.
            match devices::read_gpus() {
                Ok(gpus) => genv.refresh_devices(&gpus)?,
                Err(e) => eprintln!(
                    "genv: {}; showing the devices last seen",
                    text::printable(&e.to_string())
                ),
            }
            output::devices(&genv.devices(), json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec {
            config,
            index,
            over_subscribe,
            command,
        } => exec::run(&caller, config, index, over_subscribe, command),
        Command::Lock { command } => lock::run(current_eid()?, command),
        Command::ShellInit { shell: s } => {
            print!("{}", shell::init_code(&s)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config_cmd(caller: &Caller, c: ConfigCmd) -> Result<ExitCode, Error> {
    let ConfigCmd {
        field,
        value,
        clear,
        save,
        load,
        json,
    } = c;
    let eid = require_eid()?;
    let genv = Genv::open()?;
    let env = genv.env(&eid).ok_or_else(|| {
        Error::State(format!(
            "environment {eid} no longer exists; run `genv deactivate` and activate again"
        ))
    })?;
    let mut config = env.config.clone();
    let cwd = std::env::current_dir().ok();
    let find_home = || -> Result<std::path::PathBuf, Error> {
        cwd.as_deref().and_then(home::find_home).ok_or_else(|| {
            Error::Input(
                "no .genv directory here or in a parent directory, nor in ~: create one with `mkdir -p .genv`"
                    .into(),
            )
        })
    };
    if load {
        let h = find_home()?;
        config = home::load(&h)?;
        genv.set_config(caller, &eid, &config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let changed = clear || value.is_some();
    if clear {
        match field {
            None => config = Config::default(),
            Some(Field::Gpus) => config.gpus = None,
            Some(Field::GpuMemory) => config.gpu_memory = None,
            Some(Field::Name) => config.name = None,
        }
    } else if let Some(v) = value {
        match v {
            Value::Gpus(g) => config.gpus = Some(g),
            Value::GpuMemory(m) => config.gpu_memory = Some(m),
            Value::Name(n) => config.name = Some(n),
        }
    }
    // Find the home before changing anything, so that `--save` without one changes nothing.
    let save_home = if save { Some(find_home()?) } else { None };
    if changed {
        genv.set_config(caller, &eid, &config)?;
    }
    if let Some(h) = save_home {
        home::save(&h, &config)?;
    }
    if !changed && !save {
        output::config(&config, field.map(Field::name), json);
    }
    Ok(ExitCode::SUCCESS)
}
