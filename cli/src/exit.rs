//! How `genv` ends: every exit status it gives, in one type.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done (also help and version, when they were asked for).
    Success,
    /// genv refused or failed, with one stderr line: a bad value, the state, the machine.
    Failure,
    /// The argument parser refused the command line, or a bare `genv` printed its help: clap's
    /// usage status.
    Usage,
    /// The status of the command `exec` or `lock` ran.
    Child(u8),
    /// `activate` left the environment active and detached (see [`Exit::ACTIVE_DETACHED`]).
    ActiveDetached,
}

impl Exit {
    /// `activate` activated the environment but could not attach the devices its saved
    /// configuration asks for: the shell integration evals the code on this status too.
    pub const ACTIVE_DETACHED: u8 = 3;
}

/// The shell's convention for a command ended by a signal: 128 + the signal.
const SIGNALLED: i32 = 128;

impl Exit {
    /// What the argument parser's outcome ends with: help and version asked for are a success,
    /// anything it refused (also a bare `genv`, answered with the help) is a usage error.
    pub fn of_clap(e: &clap::Error) -> Exit {
        if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Success
        }
    }

    /// A command's status passed on, as system(3) reports it.
    pub fn of_child(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Child(c as u8),
            (None, Some(sig)) => Exit::Child((SIGNALLED + sig) as u8),
            _ => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::FAILURE,
            Exit::Usage => ExitCode::from(2),
            Exit::Child(c) => ExitCode::from(c),
            Exit::ActiveDetached => ExitCode::from(Exit::ACTIVE_DETACHED),
        }
    }
}
