//! libgenv_shim.so: injected with LD_PRELOAD into every process of an active genv environment,
//! it interposes the CUDA driver API and NVML so that unmodified programs see only the
//! environment's GPUs, with the environment's memory capacity enforced across all its processes
//! at allocation time. See docs/shim.md.
//!
//! - `dlsym`: the shim's `dlsym` (how programs that look the driver up get our wrappers);
//! - `real`: the way to the real driver libraries (typed function slots, the panic guard);
//! - `hooks`: the macro that declares each hooked function once;
//! - `cuda/`, `nvml/`: the hooked functions of each API, listed in their `mod.rs`;
//! - `view`: the environment as this process sees it; `ledger`: this process's registrations
//!   and reservations in the memory ledger;
//! - `member`: membership of the environment from load time (a lock the kernel lists);
//! - `env`: the process environment; `log`: the per-process debug log (`GENV_LOG=debug`).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod log;

pub mod cuda;
pub mod dlsym;
pub mod env;
mod hooks;
pub mod ledger;
pub mod member;
pub mod nvml;
pub mod real;
pub mod view;

/// What a forked child must redo: registered once, at the first use of the environment.
mod fork {
    use std::sync::atomic::{AtomicBool, Ordering};

    static DONE: AtomicBool = AtomicBool::new(false);

    extern "C" fn child() {
        crate::view::after_fork_child();
        crate::ledger::after_fork_child();
        crate::cuda::after_fork_child();
    }

    pub fn register() {
        if !DONE.swap(true, Ordering::AcqRel) {
            // SAFETY: registers a handler that only touches atomics and closes a descriptor.
            unsafe { libc::pthread_atfork(None, None, Some(child)) };
        }
    }
}
