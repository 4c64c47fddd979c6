//! The machine's GPUs, read through NVML (nvml-wrapper), in NVML index order.

use crate::Error;

/// A GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub total_memory: u64,
}

/// Reads every GPU of the machine from NVML (`libnvidia-ml.so.1`).
pub fn read_gpus() -> Result<Vec<Gpu>, Error> {
    let nvml = nvml_wrapper::Nvml::init()
        .map_err(|e| Error::Nvml(format!("cannot initialise NVML (libnvidia-ml.so.1): {e}")))?;
    let count = nvml
        .device_count()
        .map_err(|e| Error::Nvml(format!("cannot count GPUs through NVML: {e}")))?;
    let mut out = Vec::with_capacity(count as usize);
    for index in 0..count {
        let d = nvml
            .device_by_index(index)
            .map_err(|e| Error::Nvml(format!("cannot open GPU {index} through NVML: {e}")))?;
        let uuid = d
            .uuid()
            .map_err(|e| Error::Nvml(format!("cannot read the UUID of GPU {index}: {e}")))?;
        let name = d.name().unwrap_or_default();
        let total_memory = d.memory_info().map(|m| m.total).unwrap_or(0);
        out.push(Gpu {
            index,
            uuid,
            name,
            total_memory,
        });
    }
    Ok(out)
}
