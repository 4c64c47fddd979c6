//! `genv shell-init <shell>`: the shell function for the user's rc file, with the completions;
//! `genv shell-vars <shell>` (hidden, for that function): the code that refreshes the
//! environment's variables after `config` or `attach`.

use crate::exit::Exit;
use crate::shell::{self, Dialect};
use crate::values::Utf8;
use clap::builder::EnumValueParser;
use genv_state::{Error, Genv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[arg(value_parser = Utf8(EnumValueParser::<Dialect>::new()))]
    shell: Dialect,
    /// Leave out the tab completions of genv's commands and options
    #[arg(long)]
    no_completions: bool,
}

#[derive(clap::Args, Clone, Debug)]
pub struct VarsArgs {
    #[arg(value_parser = Utf8(EnumValueParser::<Dialect>::new()))]
    shell: Dialect,
}

pub fn run(a: Args) -> Result<Exit, Error> {
    let completions = (!a.no_completions).then(|| completions(a.shell));
    print!("{}", shell::init_code(a.shell, completions.as_deref())?);
    Ok(Exit::Success)
}

/// clap_complete's script for `shell`, from the very definitions genv parses with.
fn completions(shell: Dialect) -> String {
    use clap_complete::Shell;
    let sh = match shell {
        Dialect::Bash => Shell::Bash,
        Dialect::Zsh => Shell::Zsh,
        Dialect::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(sh, &mut crate::args::command(), "genv", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The current environment's variables as code; nothing outside an environment or when it no
/// longer exists (the function then leaves the shell as it is).
pub fn run_vars(a: VarsArgs) -> Result<Exit, Error> {
    let Some(eid) = super::current_eid()? else {
        return Ok(Exit::Success);
    };
    if let Some(env) = Genv::open()?.env(&eid) {
        print!("{}", shell::config_vars_code(a.shell, &env.config));
    }
    Ok(Exit::Success)
}
