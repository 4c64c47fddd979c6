//! `genv home`: the `.genv/` directory that applies here.

use crate::exit::Exit;
use genv_state::text::quote_path;
use genv_state::{home, Error};

#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Args {
    /// Print no message when there is none (the status still says so: 1), as the original
    /// genv's `home -q`
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Input(format!("cannot read the working directory: {e}")))?;
    match home::find_home(&cwd) {
        Some(h) => {
            println!("{}", h.display());
            Ok(Exit::Success)
        }
        None if a.quiet => Ok(Exit::Failure),
        None => Err(Error::Input(format!(
            "no .genv directory in {} or its parents, nor in ~: create one with `mkdir -p .genv`",
            quote_path(&cwd)
        ))),
    }
}
