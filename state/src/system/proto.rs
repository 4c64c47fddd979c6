//! The service's requests: one per operation of `Genv`, with the operation's own arguments and
//! nothing that says who asks (the kernel does) or what the machine is (the service reads NVML
//! itself: a caller could send any device list).

use crate::config::Config;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `attach`: `Some(over_subscribe)` to attach as configured.
    Activate {
        eid: String,
        pid: u32,
        config: Config,
        attach: Option<bool>,
    },
    Deactivate {
        eid: String,
        pid: u32,
    },
    Remove {
        eid: String,
    },
    SetConfig {
        eid: String,
        config: Config,
    },
    Attach {
        eid: String,
        index: Option<u32>,
        over_subscribe: bool,
    },
    Detach {
        eid: String,
        index: Option<u32>,
    },
    Env {
        eid: String,
    },
    Envs,
    Devices,
    RefreshDevices,
    /// Holds the environment's devices while the connection stays open; answers the NVML
    /// indices held once they are.
    Lock {
        eid: String,
    },
    /// The service's version and mode, for `genv status`.
    Hello,
}
