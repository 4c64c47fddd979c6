//! The ABI facts of the CUDA driver API and NVML that genv relies on, written once and shared
//! by the shim (`libgenv_shim.so`) and the simulated driver (`tests/sim`): types, result codes,
//! the leading fields of the records the shim reads, the `cuGetProcAddress` variant table, and
//! the layout of nvidia-smi's private NVML export table. Plain data, no dependencies.

pub mod cuda;
pub mod nvml;
pub mod procaddr;
