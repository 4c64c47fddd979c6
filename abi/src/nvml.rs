//! NVML facts that are not in the public headers' types: result codes as plain integers (the
//! shim does not link nvml-wrapper-sys), the public records the shim rewrites, and nvidia-smi's
//! private export table (`nvmlInternalGetExportTable`) as measured on driver 535 (see
//! `../shared/reference/nvml-export-tables.md`).

use std::ffi::{c_char, c_uint};

/// `nvmlReturn_t`.
pub type Ret = c_uint;
pub const SUCCESS: Ret = 0;
pub const ERROR_UNINITIALIZED: Ret = 1;
pub const ERROR_INVALID_ARGUMENT: Ret = 2;
pub const ERROR_NOT_SUPPORTED: Ret = 3;
pub const ERROR_NOT_FOUND: Ret = 6;
pub const ERROR_INSUFFICIENT_SIZE: Ret = 7;
pub const ERROR_FUNCTION_NOT_FOUND: Ret = 13;
pub const ERROR_UNKNOWN: Ret = 999;

/// `nvmlMemory_t`.
#[repr(C)]
pub struct MemoryV1 {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub struct MemoryV2 {
    pub version: c_uint,
    pub total: u64,
    pub reserved: u64,
    pub free: u64,
    pub used: u64,
}

/// "No instance" in the process records' GPU / compute instance ids.
pub const NO_INSTANCE: c_uint = 0xFFFF_FFFF;

/// nvidia-smi's private export table.
pub mod export {
    use super::*;

    /// The table nvidia-smi asks for: c4fe3e6c-c98f-6c4e-a327-ee696e12f7c4.
    pub const SMI_TABLE_UUID: [u8; 16] = [
        0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7,
        0xc4,
    ];
    /// Slot 0 of the 535 table holds its size in bytes: 245 pointer-sized slots.
    pub const LAYOUT_535_SIZE: usize = 0x7a8;
    pub const SLOTS_535: usize = LAYOUT_535_SIZE / std::mem::size_of::<usize>();

    /// `(const char *busId, u32 *domain, u32 *bus, u32 *device, u32 *function)`: parses a bus id.
    pub const SLOT_PARSE_BUS_ID: usize = 12;
    /// `(u32 index, u32 *domain, u32 *bus, u32 *device)` of NVML index `index`.
    pub const SLOT_BUS_BY_INDEX: usize = 75;
    /// `(u32 index, char *buf, u32 len)`: `"%04X:%02X:%02X.0"` of NVML index `index`.
    pub const SLOT_BUS_ID_BY_INDEX: usize = 81;
    /// `(nvmlDevice_t, u32 *count, ProcRecord *buf)`: compute, graphics, MPS processes.
    pub const SLOT_COMPUTE_PROCS: usize = 213;
    pub const SLOT_GRAPHICS_PROCS: usize = 214;
    pub const SLOT_MPS_PROCS: usize = 215;

    /// One process record of slots 213-215 (535 layout).
    #[repr(C)]
    pub struct ProcRecord {
        pub pid: u32,
        pub _pad: u32,
        pub used_gpu_memory: u64,
        pub gpu_instance_id: u32,
        pub compute_instance_id: u32,
        pub unknown: u64,
        /// Records with an empty name are not printed.
        pub name: [c_char; 4096],
    }
    pub const PROC_RECORD_SIZE: usize = std::mem::size_of::<ProcRecord>();
    const _: () = assert!(PROC_RECORD_SIZE == 0x1020);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layouts() {
        assert_eq!(std::mem::size_of::<MemoryV1>(), 24);
        assert_eq!(std::mem::size_of::<MemoryV2>(), 40);
        assert_eq!(std::mem::offset_of!(MemoryV2, total), 8);
        assert_eq!(export::SLOTS_535, 245);
    }
}
