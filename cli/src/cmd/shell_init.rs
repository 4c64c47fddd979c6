//! `genv shell-init <shell>`: the shell function for the user's rc file.

use crate::exit::Exit;
use crate::shell::{self, Dialect};
use crate::values::Utf8;
use clap::builder::EnumValueParser;
use genv_state::Error;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[arg(value_parser = Utf8(EnumValueParser::<Dialect>::new()))]
    shell: Dialect,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    print!("{}", shell::init_code(a.shell)?);
    Ok(Exit::Success)
}
