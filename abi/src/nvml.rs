//! NVML facts that are not in the public headers' types: result codes as plain integers (the
//! shim does not link nvml-wrapper-sys), the public records the shim rewrites, and nvidia-smi's
//! private export table (`nvmlInternalGetExportTable`) of each measured driver generation (see
//! `../shared/reference/nvml-export-tables.md`).

use std::ffi::c_uint;

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

/// nvidia-smi's private export table, per driver generation (measured: see
/// `../shared/reference/nvml-export-tables.md`). The one place this knowledge lives: the shim
/// recognises a driver's table by it and the simulated NVML serves each generation from it.
pub mod export {
    /// The table nvidia-smi asks for: c4fe3e6c-c98f-6c4e-a327-ee696e12f7c4.
    pub const SMI_TABLE_UUID: [u8; 16] = [
        0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7,
        0xc4,
    ];

    /// One pointer-sized slot. Slot 0 holds the table's size in bytes; nvidia-smi calls slot N
    /// only when `size >= (N + 1) * SLOT` and the slot is not NULL.
    pub const SLOT: usize = std::mem::size_of::<usize>();

    // Slots keep their meaning in every measured table (newer tables only add slots at the
    // end and fill or clear a few): these numbers hold for all generations that reach them.

    /// `(const char *busId, u32 *domain, u32 *bus, u32 *device, u32 *function)`: parses a bus id.
    pub const SLOT_PARSE_BUS_ID: usize = 12;
    /// `(u32 index, u32 *domain, u32 *bus, u32 *device)` of NVML index `index`.
    pub const SLOT_BUS_BY_INDEX: usize = 75;
    /// `(u32 index, char *buf, u32 len)`: `"%04X:%02X:%02X.0"` of NVML index `index`.
    pub const SLOT_BUS_ID_BY_INDEX: usize = 81;
    /// `(nvmlDevice_t, u32 *count, record *buf)`: compute, graphics, MPS processes. `*count`
    /// comes in as the buffer's capacity in records and goes back as the number written.
    pub const SLOT_COMPUTE_PROCS: usize = 213;
    pub const SLOT_GRAPHICS_PROCS: usize = 214;
    pub const SLOT_MPS_PROCS: usize = 215;
    pub const PROC_SLOTS: [usize; 3] = [SLOT_COMPUTE_PROCS, SLOT_GRAPHICS_PROCS, SLOT_MPS_PROCS];

    /// The process record slots 213-215 write. Every layout has pid u32 @0, usedGpuMemory u64
    /// @8, gpuInstanceId u32 @0x10, computeInstanceId u32 @0x14 and a NUL-terminated name of
    /// [`NAME_LEN`] bytes at `name`; nvidia-smi skips records with an empty name.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Record {
        pub size: usize,
        pub name: usize,
    }
    pub const NAME_LEN: usize = 4096;
    pub const RECORD_PID: usize = 0;
    pub const RECORD_USED: usize = 8;
    pub const RECORD_GPU_INSTANCE: usize = 0x10;
    pub const RECORD_COMPUTE_INSTANCE: usize = 0x14;

    impl Record {
        /// A record of `size` bytes whose name is its last [`NAME_LEN`] bytes (the shape of
        /// every measured one); None when too small to hold the fixed fields and a name.
        pub const fn ending_in_name(size: usize) -> Option<Record> {
            if size < 0x18 + NAME_LEN || !size.is_multiple_of(8) {
                return None;
            }
            Some(Record {
                size,
                name: size - NAME_LEN,
            })
        }
    }

    /// 525: the name right after the instance ids.
    pub const RECORD_525: Record = Record {
        size: 0x1018,
        name: 0x18,
    };
    /// 535 and later: an unknown u64 at 0x18, then the name.
    pub const RECORD_535: Record = Record {
        size: 0x1020,
        name: 0x20,
    };

    /// One measured driver generation: what its NVML reports and how its table is laid out.
    #[derive(Debug)]
    pub struct Generation {
        pub major: u32,
        pub driver_version: &'static str,
        /// `cuDriverGetVersion` / `nvmlSystemGetCudaDriverVersion` (12020 = CUDA 12.2).
        pub cuda_version: i32,
        /// Slot 0: the table's size in bytes.
        pub size: usize,
        /// What slots 213-215 write; None where the table ends before them (470 lists
        /// processes through the public `nvmlDevice*RunningProcesses_v2` functions instead).
        pub record: Option<Record>,
        /// Slots below `size / SLOT` that the driver leaves NULL (inclusive ranges).
        pub null_slots: &'static [(u16, u16)],
        /// NVML functions this generation's library has and the previous one's lacks (among
        /// those the simulated NVML implements): a function is there from the generation that
        /// lists it on, and in every generation when no generation lists it.
        pub adds: &'static [&'static str],
    }

    impl Generation {
        /// The number of slots, slot 0 included.
        pub const fn slots(&self) -> usize {
            self.size / SLOT
        }

        /// Whether the driver fills `slot` (slot 0, the size, counts as filled).
        pub fn fills(&self, slot: usize) -> bool {
            slot < self.slots()
                && !self
                    .null_slots
                    .iter()
                    .any(|&(a, b)| (a as usize..=b as usize).contains(&slot))
        }

        /// The record slot `slot` writes, if this generation's table has that process slot.
        pub fn record_of(&self, slot: usize) -> Option<Record> {
            self.record.filter(|_| slot < self.slots())
        }

        /// Whether this generation's NVML has function `name`.
        pub fn has(&self, name: &str) -> bool {
            GENERATIONS
                .iter()
                .filter(|g| g.major > self.major)
                .all(|g| !g.adds.contains(&name))
        }
    }

    /// Every measured generation, oldest (and smallest table) first.
    pub const GENERATIONS: &[Generation] = &[
        Generation {
            major: 470,
            driver_version: "470.256.02",
            cuda_version: 11040,
            size: 0x6a8,
            record: None,
            null_slots: &[
                (1, 2),
                (64, 64),
                (90, 90),
                (104, 104),
                (139, 139),
                (150, 150),
                (157, 163),
                (167, 167),
                (178, 178),
                (187, 187),
            ],
            adds: &[],
        },
        Generation {
            major: 525,
            driver_version: "525.147.05",
            cuda_version: 12000,
            size: 0x770,
            record: Some(RECORD_525),
            null_slots: &[
                (1, 2),
                (24, 24),
                (35, 35),
                (60, 60),
                (64, 64),
                (90, 90),
                (104, 104),
                (121, 122),
                (139, 139),
                (150, 150),
                (157, 163),
                (167, 167),
                (176, 178),
                (187, 187),
                (190, 191),
                (198, 198),
                (201, 202),
                (211, 211),
            ],
            adds: &[
                "nvmlDeviceGetMemoryInfo_v2",
                "nvmlDeviceGetComputeRunningProcesses_v3",
                "nvmlDeviceGetGraphicsRunningProcesses_v3",
                "nvmlDeviceGetMPSComputeRunningProcesses_v3",
                "nvmlDeviceGetGpcClkVfOffset",
                "nvmlDeviceGetGpuFabricInfo",
                "nvmlDeviceGetGpuInstanceProfileInfoV",
                "nvmlDeviceGetGpuMaxPcieLinkGeneration",
                "nvmlDeviceGetGspFirmwareMode",
                "nvmlDeviceGetGspFirmwareVersion",
                "nvmlDeviceGetMemoryBusWidth",
                "nvmlDeviceGetNumGpuCores",
                "nvmlDeviceGetVgpuCapabilities",
                "nvmlDeviceGetVgpuSchedulerCapabilities",
                "nvmlDeviceGetVgpuSchedulerLog",
                "nvmlDeviceGetVgpuSchedulerState",
                "nvmlDeviceSetGpcClkVfOffset",
                "nvmlDeviceSetNvLinkDeviceLowPowerThreshold",
                "nvmlGetVgpuDriverCapabilities",
                "nvmlGpmMetricsGet",
                "nvmlGpmSampleAlloc",
                "nvmlGpmSampleFree",
                "nvmlGpmSampleGet",
                "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
                "nvmlGpuInstanceGetComputeInstancePossiblePlacements",
                "nvmlGpuInstanceGetComputeInstanceProfileInfoV",
                "nvmlVgpuInstanceGetGpuPciId",
                "nvmlVgpuInstanceGetLicenseInfo_v2",
                "nvmlVgpuTypeGetCapabilities",
            ],
        },
        Generation {
            major: 535,
            driver_version: "535.261.03",
            cuda_version: 12020,
            size: 0x7a8,
            record: Some(RECORD_535),
            null_slots: &[
                (1, 2),
                (24, 24),
                (35, 35),
                (60, 60),
                (64, 64),
                (90, 90),
                (104, 104),
                (121, 122),
                (139, 139),
                (150, 150),
                (157, 163),
                (167, 167),
                (176, 178),
                (187, 187),
                (190, 191),
                (198, 198),
                (201, 202),
                (207, 207),
                (211, 211),
                (216, 217),
                (235, 236),
            ],
            adds: &[
                "nvmlDeviceGetConfComputeProtectedMemoryUsage",
                "nvmlDeviceGetJpgUtilization",
                "nvmlDeviceGetLastBBXFlushTime",
                "nvmlDeviceGetModuleId",
                "nvmlDeviceGetOfaUtilization",
                "nvmlDeviceGetSramEccErrorStatus",
                "nvmlDeviceSetConfComputeUnprotectedMemSize",
                "nvmlDeviceSetPowerManagementLimit_v2",
                "nvmlDeviceSetVgpuSchedulerState",
                "nvmlGpmQueryIfStreamingEnabled",
                "nvmlGpmSetStreamingEnabled",
                "nvmlSystemGetConfComputeCapabilities",
                "nvmlSystemGetConfComputeGpusReadyState",
                "nvmlSystemGetConfComputeState",
                "nvmlSystemGetNvlinkBwMode",
                "nvmlSystemSetConfComputeGpusReadyState",
                "nvmlSystemSetNvlinkBwMode",
            ],
        },
        Generation {
            major: 550,
            driver_version: "550.163.01",
            cuda_version: 12040,
            size: 0x7d8,
            record: Some(RECORD_535),
            null_slots: &[
                (1, 2),
                (24, 24),
                (35, 35),
                (42, 43),
                (60, 60),
                (64, 64),
                (90, 90),
                (104, 104),
                (121, 122),
                (139, 139),
                (150, 150),
                (157, 163),
                (167, 167),
                (176, 178),
                (187, 187),
                (190, 191),
                (198, 198),
                (201, 202),
                (207, 207),
                (211, 211),
                (216, 217),
                (235, 236),
                (241, 241),
            ],
            // What nvidia-smi 550 asks for beyond 535 (without them: "Function Not Found").
            adds: &[
                "nvmlDeviceGetPciInfoExt",
                "nvmlDeviceGetC2cModeInfoV",
                "nvmlDeviceGetGpuFabricInfoV",
                "nvmlDeviceGetVgpuHeterogeneousMode",
                "nvmlDeviceGetProcessesUtilizationInfo",
            ],
        },
        Generation {
            major: 555,
            driver_version: "555.58.02",
            cuda_version: 12050,
            size: 0x7f8,
            record: Some(RECORD_535),
            null_slots: &[
                (1, 2),
                (24, 24),
                (35, 35),
                (42, 43),
                (60, 60),
                (64, 64),
                (90, 90),
                (104, 104),
                (121, 122),
                (139, 139),
                (150, 150),
                (157, 163),
                (167, 167),
                (176, 178),
                (187, 187),
                (190, 191),
                (198, 198),
                (201, 202),
                (207, 207),
                (211, 211),
                (216, 217),
                (235, 236),
                (241, 241),
                (252, 254),
            ],
            adds: &["nvmlDeviceGetCapabilities", "nvmlDeviceGetDriverModel_v2"],
        },
    ];

    /// The generation of that major version.
    pub fn generation(major: u32) -> Option<&'static Generation> {
        GENERATIONS.iter().find(|g| g.major == major)
    }

    /// The newest measured generation.
    pub fn newest() -> &'static Generation {
        &GENERATIONS[GENERATIONS.len() - 1]
    }

    /// How a driver's table of `size` bytes (its slot 0) is read.
    #[derive(Clone, Copy, Debug)]
    pub struct Layout {
        /// The measured generation whose slot meanings and records apply.
        pub generation: &'static Generation,
        /// The table is that generation's own (same size): everything in it is as measured.
        pub exact: bool,
        /// Slots to serve (slot 0 included), never more than the driver's table has.
        pub slots: usize,
    }

    impl Layout {
        /// An exact size is its generation. Any other size is read as the newest generation
        /// whose table is not larger (the oldest for a smaller one), and only as far as that
        /// generation's table goes: slots past it, or left NULL in it, mean nothing we know.
        pub fn of(size: usize) -> Layout {
            if let Some(g) = GENERATIONS.iter().find(|g| g.size == size) {
                return Layout {
                    generation: g,
                    exact: true,
                    slots: g.slots(),
                };
            }
            let g = GENERATIONS
                .iter()
                .rev()
                .find(|g| g.size <= size)
                .unwrap_or(&GENERATIONS[0]);
            Layout {
                generation: g,
                exact: false,
                slots: (size / SLOT).min(g.slots()),
            }
        }

        /// Whether the served table keeps the driver's `slot` (an unknown table keeps only the
        /// slots its generation fills).
        pub fn keeps(&self, slot: usize) -> bool {
            slot < self.slots && (self.exact || self.generation.fills(slot))
        }

        /// The record of process slot `slot`, when the served table has it.
        pub fn record_of(&self, slot: usize) -> Option<Record> {
            self.generation
                .record_of(slot)
                .filter(|_| slot < self.slots)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layouts() {
        assert_eq!(std::mem::size_of::<MemoryV1>(), 24);
        assert_eq!(std::mem::size_of::<MemoryV2>(), 40);
        assert_eq!(std::mem::offset_of!(MemoryV2, total), 8);
    }

    #[test]
    fn generations() {
        use export::*;
        let sizes: Vec<usize> = GENERATIONS.iter().map(|g| g.size).collect();
        assert_eq!(sizes, [0x6a8, 0x770, 0x7a8, 0x7d8, 0x7f8]);
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "sorted by size");
        assert_eq!(generation(535).unwrap().slots(), 245);
        for g in GENERATIONS {
            // Every slot the shim rewrites is filled where the table reaches it.
            for s in [SLOT_BUS_BY_INDEX, SLOT_BUS_ID_BY_INDEX, SLOT_PARSE_BUS_ID] {
                assert!(g.fills(s), "{} {s}", g.major);
            }
            for s in PROC_SLOTS {
                assert_eq!(g.fills(s), g.record.is_some(), "{} {s}", g.major);
                assert_eq!(g.record_of(s), g.record);
            }
            assert!(g
                .null_slots
                .iter()
                .all(|&(a, b)| a <= b && (b as usize) < g.slots()));
            assert!(g.driver_version.starts_with(&g.major.to_string()));
        }
        assert_eq!(RECORD_525.name + NAME_LEN, RECORD_525.size);
        assert_eq!(Record::ending_in_name(0x1020), Some(RECORD_535));
        assert_eq!(Record::ending_in_name(0x100), None);
        // A function is there from the generation that adds it on.
        let (g470, g535, g555) = (generation(470).unwrap(), generation(535).unwrap(), newest());
        assert!(!g470.has("nvmlDeviceGetMemoryInfo_v2") && g535.has("nvmlDeviceGetMemoryInfo_v2"));
        assert!(!g535.has("nvmlDeviceGetPciInfoExt") && g555.has("nvmlDeviceGetPciInfoExt"));
        assert!(g470.has("nvmlDeviceGetName"));
    }

    #[test]
    fn layouts() {
        use export::*;
        for g in GENERATIONS {
            let l = Layout::of(g.size);
            assert!(l.exact && l.generation.major == g.major && l.slots == g.slots());
            assert!(l.keeps(24), "an exact table is served whole");
        }
        // Larger than any: the newest, only as far as it goes, its NULL slots dropped.
        let l = Layout::of(0x820);
        assert!(!l.exact && l.generation.major == 555 && l.slots == 255);
        assert!(l.keeps(213) && !l.keeps(24) && !l.keeps(252) && !l.keeps(255));
        assert_eq!(l.record_of(214), Some(RECORD_535));
        // Between two: the older one.
        let l = Layout::of(0x7b0);
        assert!(!l.exact && l.generation.major == 535 && l.slots == 245);
        // Smaller than any, and not a whole number of slots: the oldest, cut to the table.
        let l = Layout::of(0x2a4);
        assert!(!l.exact && l.generation.major == 470 && l.slots == 84);
        assert!(l.keeps(81) && !l.keeps(84) && l.record_of(213).is_none());
    }
}
