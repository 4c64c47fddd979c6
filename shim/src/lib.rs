//! libgenv_shim.so: injected with LD_PRELOAD into every process of an active genv environment,
//! it interposes the CUDA driver API and NVML so that unmodified programs see only the
//! environment's GPUs, with the environment's memory capacity enforced across all its processes
//! at allocation time. See docs/shim.md.
//!
//! - `hook`: the shim's `dlsym` and the way to the real driver libraries;
//! - `view`: the environment as this process sees it, and the memory ledger;
//! - `cuda`: the CUDA driver wrappers (device view, memory capacity, `cuGetProcAddress`);
//! - `nvml`: the NVML wrappers;
//! - `log`: the per-process debug log (`GENV_LOG=debug`).

pub mod log;

pub mod cuda;
pub mod hook;
pub mod nvml;
pub mod view;

/// What a forked child must redo: registered once, at the first use of the environment.
mod fork {
    use std::sync::atomic::{AtomicBool, Ordering};

    static DONE: AtomicBool = AtomicBool::new(false);

    extern "C" fn child() {
        crate::view::after_fork_child();
        crate::cuda::after_fork_child();
    }

    pub fn register() {
        if !DONE.swap(true, Ordering::AcqRel) {
            // SAFETY: registers a handler that only touches atomics and closes a descriptor.
            unsafe { libc::pthread_atfork(None, None, Some(child)) };
        }
    }
}
