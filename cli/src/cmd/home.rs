//! `genv home`: the `.genv/` directory that applies here.

use crate::exit::Exit;
use genv_state::text::quote_path;
use genv_state::{home, Error};

pub fn run() -> Result<Exit, Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Input(format!("cannot read the working directory: {e}")))?;
    match home::find_home(&cwd) {
        Some(h) => {
            println!("{}", h.display());
            Ok(Exit::Success)
        }
        None => Err(Error::Input(format!(
            "no .genv directory in {} or its parents, nor in ~: create one with `mkdir -p .genv`",
            quote_path(&cwd)
        ))),
    }
}
