//! `genv attach`: devices for the current environment.

use crate::exit::Exit;
use crate::values::{checked, Checked};
use genv_state::{AttachOutcome, Caller, DeviceCount, DeviceIndex, Error, Genv, Input};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Attach this device (NVML index) only
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceIndex::parse_os))]
    index: Option<Checked<DeviceIndex>>,
    /// Set the device count to N and attach that many devices (`genv config gpus N` and
    /// `genv attach` in one command; the count is kept as it was when attaching fails)
    #[arg(long, value_name = "N", conflicts_with = "index", allow_hyphen_values = true, value_parser = checked(DeviceCount::parse_os))]
    count: Option<Checked<DeviceCount>>,
    /// Allow sharing devices with other over-subscribed environments when their GPU memory
    /// capacities fit
    #[arg(short = 'o', long)]
    over_subscribe: bool,
}

/// `attach`, checked.
#[derive(Debug)]
pub struct Request {
    pub index: Option<DeviceIndex>,
    pub count: Option<DeviceCount>,
    pub over_subscribe: bool,
}

impl Args {
    pub fn check(self) -> Result<Request, Error> {
        Ok(Request {
            index: Checked::opt(self.index)?,
            count: Checked::opt(self.count)?,
            over_subscribe: self.over_subscribe,
        })
    }
}

pub fn run(caller: &Caller, a: Request) -> Result<Exit, Error> {
    let eid = super::require_eid()?;
    let genv = Genv::open()?;
    let gpus = genv.machine_gpus()?;
    let index = a.index.map(DeviceIndex::get);
    // `--count`: the environment's count is what placement follows (a later `genv attach`
    // keeps to it), so it is configured first, and put back when attaching fails.
    let before = match a.count {
        Some(n) => {
            let env = genv.env(&eid).ok_or_else(|| {
                Error::State(format!(
                    "environment {eid} no longer exists; run `genv deactivate` and activate again"
                ))
            })?;
            let mut config = env.config.clone();
            config.gpus = Some(n);
            genv.set_config(caller, &eid, &config)?;
            Some(env.config)
        }
        None => None,
    };
    let outcome = genv.attach(caller, &eid, &gpus, index, a.over_subscribe);
    let failed = match outcome {
        Ok(AttachOutcome::Attached(_)) => return Ok(Exit::Success),
        Ok(AttachOutcome::Failed(msg)) => Error::Unavailable(msg),
        Err(e) => e,
    };
    if let Some(config) = before {
        genv.set_config(caller, &eid, &config)?;
    }
    Err(failed)
}
