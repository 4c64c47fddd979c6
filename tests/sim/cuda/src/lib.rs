//! Test-double `libcuda.so.1`: a simulated CUDA driver over the simulated GPU machine of
//! `genv-sim-common`.
//!
//! Entry points carry the real driver's names and ABIs (every `_v2` / `_v3` / `_ptsz` variant
//! is its own symbol) and `cuGetProcAddress(_v2)` resolves base names by CUDA version and
//! stream mode from `genv_abi::procaddr`. Device memory is host memory; each device byte and each
//! context is recorded in the machine's cross-process ledger, so the simulated NVML sees them.
//! Nothing can run on the devices: module loading and kernel launches fail cleanly.

// The entry points keep the C API's names and document their contracts in the CUDA driver API.
#![allow(non_snake_case, clippy::missing_safety_doc)]

mod array;
mod context;
mod device;
mod errors;
mod memory;
mod pool;
mod procaddr;
mod state;
mod stream;
mod vmm;
