//! `genv daemon`: the system mode's service (run by root, by its systemd unit; see
//! `genv admin install`).

use crate::exit::Exit;
use genv_state::mode::Mode;
use genv_state::Error;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The system configuration (default: as every genv finds it)
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let mode = match &a.config {
        Some(p) => Mode::from_file(p, true)?,
        None => Mode::current()?.clone(),
    };
    genv_state::system::service::run(&mode)?;
    Ok(Exit::Success)
}
