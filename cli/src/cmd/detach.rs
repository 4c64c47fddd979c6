//! `genv detach`: the current environment lets its devices go.

use crate::exit::Exit;
use crate::values::{checked, Checked};
use genv_state::{Caller, DeviceIndex, Error, Genv, Input};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Detach from this device only
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceIndex::parse_os))]
    index: Option<Checked<DeviceIndex>>,
}

impl Args {
    /// The one device to detach from, if one is named.
    pub fn check(self) -> Result<Option<DeviceIndex>, Error> {
        Checked::opt(self.index)
    }
}

pub fn run(caller: &Caller, index: Option<DeviceIndex>) -> Result<Exit, Error> {
    let eid = super::require_eid()?;
    Genv::open()?.detach(caller, &eid, index.map(DeviceIndex::get))?;
    Ok(Exit::Success)
}
