//! Functions clients look up and handle when they answer NVML_ERROR_NOT_SUPPORTED (printed as
//! N/A by nvidia-smi, skipped by pynvml clients). A missing symbol is worse: nvidia-smi stops,
//! nvitop prints tracebacks.

use crate::*;

not_supported! {
    nvmlDeviceGetFanSpeed
}
