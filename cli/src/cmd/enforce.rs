//! `genv enforce`: the backstop run by root (its systemd unit, `genv-enforce.service`, is
//! written by `genv admin install`): passes that read the real GPU usage from NVML and act on
//! the processes that break the policy (genv_state::enforce; the policy in the system
//! configuration, genv_state::policy).

use crate::exit::Exit;
use genv_state::enforce::{self, Options};
use genv_state::mode::Mode;
use genv_state::policy::Policy;
use genv_state::{Error, Genv};
use std::io::Write;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// One pass, then exit (status 1 when the pass could not read everything it needs)
    #[arg(long)]
    once: bool,
    /// Say what would be done, do nothing
    #[arg(long)]
    dry_run: bool,
    /// Seconds between passes (default: interval_seconds of [enforce], else 10)
    #[arg(long, value_parser = seconds)]
    interval: Option<Duration>,
    /// Seconds from SIGTERM to SIGKILL (default: grace_seconds of [enforce], else 10)
    #[arg(long, value_parser = seconds)]
    grace: Option<Duration>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 86400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("invalid seconds {s:?}: a number from 0 to 86400, such as 10 or 0.5")
        })
}

/// The systemd unit of the enforcer for `genv` at `exe` reading `config`.
pub fn unit(exe: &str, config: &str) -> String {
    format!(
        "[Unit]\n\
         Description=genv: enforcement backstop (processes outside the rules of the GPU environments)\n\
         After=genv.service\n\
         \n\
         [Service]\n\
         Environment=GENV_CONFIG={config}\n\
         ExecStart={exe} enforce\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The policy now: read again for every pass (an edit takes effect without a restart); a file
/// that no longer reads keeps the last good policy, said once per pass.
fn policy(last: &Policy) -> Policy {
    let Ok(mode) = Mode::current() else {
        return last.clone();
    };
    match mode {
        Mode::System { config, .. } => match Policy::of_file(config) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("genv enforce: {e}; the last policy read stays in force");
                last.clone()
            }
        },
        Mode::Shared { .. } => Policy::default(),
    }
}

pub fn run(a: Args) -> Result<Exit, Error> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err(Error::Permission(
            "genv enforce reads and signals every user's processes, which only root may do".into(),
        ));
    }
    let genv = Genv::open()?;
    let mut current = Mode::current()?.policy();
    let mut say = |l: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{l}");
        let _ = out.flush();
    };
    loop {
        current = policy(&current);
        let e = &current.enforce;
        let o = Options {
            dry_run: a.dry_run,
            grace: a.grace.unwrap_or(Duration::from_secs(e.grace_seconds)),
            nvml_timeout: Duration::from_secs(e.nvml_timeout_seconds.max(1)),
        };
        let r = enforce::pass(&genv, &current, &o, &mut say);
        match &r {
            Ok(p) if a.once => say(&format!(
                "genv enforce: {} process(es) on {} GPU(s); {} {}",
                p.processes,
                p.gpus,
                p.decisions.len(),
                if a.dry_run {
                    "would be acted on"
                } else {
                    "acted on"
                }
            )),
            Ok(_) => {}
            Err(e) => eprintln!("genv enforce: {e}: no action in this pass"),
        }
        if a.once {
            return Ok(if r.is_ok() {
                Exit::Success
            } else {
                Exit::Failure
            });
        }
        std::thread::sleep(
            a.interval
                .unwrap_or(Duration::from_secs(current.enforce.interval_seconds.max(1))),
        );
    }
}
