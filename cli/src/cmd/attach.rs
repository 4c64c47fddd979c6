//! `genv attach`: devices for the current environment.

use crate::exit::Exit;
use crate::values::{checked, Checked};
use genv_state::{AttachOutcome, Caller, DeviceIndex, Error, Genv, Input};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Attach this device (NVML index) only
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceIndex::parse_os))]
    index: Option<Checked<DeviceIndex>>,
    /// Allow sharing devices with other over-subscribed environments when their GPU memory
    /// capacities fit
    #[arg(long)]
    over_subscribe: bool,
}

/// `attach`, checked.
#[derive(Debug)]
pub struct Request {
    pub index: Option<DeviceIndex>,
    pub over_subscribe: bool,
}

impl Args {
    pub fn check(self) -> Result<Request, Error> {
        Ok(Request {
            index: Checked::opt(self.index)?,
            over_subscribe: self.over_subscribe,
        })
    }
}

pub fn run(caller: &Caller, a: Request) -> Result<Exit, Error> {
    let eid = super::require_eid()?;
    let genv = Genv::open()?;
    let gpus = genv.machine_gpus()?;
    let index = a.index.map(DeviceIndex::get);
    match genv.attach(caller, &eid, &gpus, index, a.over_subscribe)? {
        AttachOutcome::Attached(_) => Ok(Exit::Success),
        AttachOutcome::Failed(msg) => Err(Error::Unavailable(msg)),
    }
}
