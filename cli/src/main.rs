//! The `genv` command line: thin presentation over `genv_state` (every state change lives there).

mod args;
mod cmd;
mod exit;
mod output;
mod shell;
mod values;

use args::Outcome;
use exit::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The shim must leave the genv CLI alone: it sees the real machine, also inside an
    // environment. The shim checks this lazily, so setting it before any NVML use suffices.
    std::env::set_var("GENV_SHIM_BYPASS", "1");
    // Run from inside an environment, the shim's stub made this process a member: the CLI is
    // not work of the environment (`genv deactivate` must be able to end it, `genv envs` must
    // not list itself).
    genv_state::members::leave();
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    // SAFETY: restores the default disposition; no handler of ours is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let exit = match args::parse(std::env::args_os().collect()) {
        Outcome::Run(c) => cmd::run(c).unwrap_or_else(|e| {
            eprintln!("{}", args::error_line(&e));
            Exit::Failure
        }),
        Outcome::Show(e) => {
            let _ = e.print();
            Exit::of_clap(&e)
        }
        Outcome::ShowAsCode(Some(d), text) => {
            print!("{}", shell::print_code(d, &text));
            Exit::Success
        }
        Outcome::ShowAsCode(None, text) => {
            eprint!("{text}");
            Exit::Success
        }
        Outcome::Refuse { line, exit } => {
            eprintln!("{line}");
            exit
        }
    };
    exit.into()
}
