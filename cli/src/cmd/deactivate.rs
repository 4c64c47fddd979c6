//! `genv deactivate`: leaves the shell's environment and prints the code that restores the
//! shell as it was before `activate`.

use crate::exit::Exit;
use crate::shell::{self, ShellArgs, ShellCall};
use genv_state::{Caller, Error, Genv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    sh: ShellArgs,
}

impl Args {
    pub fn check(self) -> Result<ShellCall, Error> {
        self.sh.check("deactivate")
    }
}

pub fn run(caller: &Caller, sh: ShellCall) -> Result<Exit, Error> {
    let eid = super::require_eid()?;
    Genv::open()?.deactivate(caller, &eid, sh.pid)?;
    print!("{}", shell::deactivate_code(sh.dialect));
    Ok(Exit::Success)
}
