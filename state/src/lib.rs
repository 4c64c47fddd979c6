//! genv's shared state: a memory-mapped file of fixed-layout records that the CLI and the SDK
//! write (in transactions) and the shim reads (lock-free), plus the shim's memory ledger.
//! See ARCHITECTURE.md for the layout and the concurrency rules.

// Every unsafe operation is in an `unsafe` block with its own `// SAFETY:` reason.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod devices;
pub mod enforce;
pub mod fsafe;
pub mod home;
pub mod input;
pub mod layout;
pub mod ledger;
mod liveness;
pub mod lock;
pub mod members;
pub mod mode;
pub mod ops;
pub mod placement;
pub mod policy;
pub mod procfs;
pub mod store;
pub mod system;
pub mod text;
pub mod units;
pub mod visible;

pub use config::Config;
pub use input::{Capacity, DeviceCount, DeviceIndex, EnvId, Input, Name, ProcessId, Whole};
pub use ops::{Caller, DeviceInfo, EnvInfo, Genv};
pub use placement::AttachOutcome;
pub use store::{state_dir, state_path, Snapshot, Store};

/// Everything that can go wrong, each with a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad input: names the input and what is allowed.
    Input(String),
    /// The state file cannot be used: names the file and the way out.
    State(String),
    /// NVML could not be read.
    Nvml(String),
    /// Another user's environment.
    Permission(String),
    /// The devices asked for are taken.
    Unavailable(String),
    /// The environment lacks the configuration the operation needs (a device count to attach).
    NotConfigured(String),
    NotActive,
    AlreadyActive,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Input(m)
            | Error::State(m)
            | Error::Nvml(m)
            | Error::Permission(m)
            | Error::Unavailable(m)
            | Error::NotConfigured(m) => f.write_str(m),
            Error::NotActive => f.write_str("Not running in an active environment"),
            Error::AlreadyActive => f.write_str("Already running in an active environment"),
        }
    }
}

impl std::error::Error for Error {}
