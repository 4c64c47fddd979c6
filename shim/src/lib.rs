//! libgenv_shim.so: interposes the CUDA driver API and NVML (see ARCHITECTURE.md).
