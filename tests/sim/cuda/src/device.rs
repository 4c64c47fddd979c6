//! Initialisation, versions and device queries.

use crate::state::*;
use genv_abi::cuda::*;
use genv_sim_common::{machine, Gpu};
use std::ffi::{c_char, c_int, c_uint, CStr};

/// Copies `s` into a C buffer of `len` bytes, truncating, always NUL-terminated.
unsafe fn write_str(buf: *mut c_char, len: c_int, s: &str) -> R {
    if buf.is_null() || len <= 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let n = s.len().min(len as usize - 1);
    std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, n);
    *buf.add(n) = 0;
    Ok(())
}

fn gpu(nvml: usize) -> &'static Gpu {
    &machine().gpus[nvml]
}

#[no_mangle]
pub unsafe extern "C" fn cuInit(flags: c_uint) -> CUresult {
    ffi(|| {
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match driver().do_init() {
            CUDA_SUCCESS => Ok(()),
            e => Err(e),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CUresult {
    ffi(|| out(version, machine().cuda_version))
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        out(count, d.visible.len() as c_int)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    ffi(|| {
        driver().nvml(ordinal)?;
        out(device, ordinal)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        write_str(name, len, &gpu(n).name)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        out(
            uuid,
            CUuuid {
                bytes: gpu(n).uuid_bytes,
            },
        )
    })
}

/// Same as `cuDeviceGetUuid` here: the two differ only for MIG instances.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut CUuuid, dev: CUdevice) -> CUresult {
    cuDeviceGetUuid(uuid, dev)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        out(bytes, gpu(n).total_memory as usize)
    })
}

/// The pre-3.2 ABI with a 32-bit size: clamped.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem(bytes: *mut c_uint, dev: CUdevice) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        out(bytes, gpu(n).total_memory.min(u32::MAX as u64) as c_uint)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceComputeCapability(
    major: *mut c_int,
    minor: *mut c_int,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        driver().nvml(dev)?;
        out(major, 9)?;
        out(minor, 0)
    })
}

/// Highest `CUdevice_attribute` value known (CU_DEVICE_ATTRIBUTE_MAX of CUDA 12.9).
const ATTRIBUTE_MAX: c_int = 144;

/// An H100 SXM5 80GB as the real driver describes it; unlisted attributes read 0.
fn attribute(attr: c_int, g: &Gpu) -> c_int {
    match attr {
        1 => 1024,                   // MAX_THREADS_PER_BLOCK
        2 | 3 => 1024,               // MAX_BLOCK_DIM_X / Y
        4 => 64,                     // MAX_BLOCK_DIM_Z
        5 => 2_147_483_647,          // MAX_GRID_DIM_X
        6 | 7 => 65535,              // MAX_GRID_DIM_Y / Z
        8 => 49152,                  // MAX_SHARED_MEMORY_PER_BLOCK
        9 => 65536,                  // TOTAL_CONSTANT_MEMORY
        10 => 32,                    // WARP_SIZE
        11 => 2_147_483_647,         // MAX_PITCH
        12 => 65536,                 // MAX_REGISTERS_PER_BLOCK
        13 => 1_980_000,             // CLOCK_RATE (kHz)
        14 => 512,                   // TEXTURE_ALIGNMENT
        15 => 1,                     // GPU_OVERLAP
        16 => 132,                   // MULTIPROCESSOR_COUNT
        19 => 1,                     // CAN_MAP_HOST_MEMORY
        21 => 131072,                // MAXIMUM_TEXTURE1D_WIDTH
        22 => 131072,                // MAXIMUM_TEXTURE2D_WIDTH
        23 => 65536,                 // MAXIMUM_TEXTURE2D_HEIGHT
        24..=26 => 16384,            // MAXIMUM_TEXTURE3D_*
        27 | 28 => 32768,            // MAXIMUM_TEXTURE2D_LAYERED_WIDTH / HEIGHT
        29 => 2048,                  // MAXIMUM_TEXTURE2D_LAYERED_LAYERS
        30 => 512,                   // SURFACE_ALIGNMENT
        31 => 1,                     // CONCURRENT_KERNELS
        32 => 1,                     // ECC_ENABLED
        33 => g.pci_bus as c_int,    // PCI_BUS_ID
        34 => g.pci_device as c_int, // PCI_DEVICE_ID
        36 => 2_619_000,             // MEMORY_CLOCK_RATE (kHz)
        37 => 5120,                  // GLOBAL_MEMORY_BUS_WIDTH
        38 => 52_428_800,            // L2_CACHE_SIZE
        39 => 2048,                  // MAX_THREADS_PER_MULTIPROCESSOR
        40 => 3,                     // ASYNC_ENGINE_COUNT
        41 => 1,                     // UNIFIED_ADDRESSING
        42 => 32768,                 // MAXIMUM_TEXTURE1D_LAYERED_WIDTH
        43 => 2048,                  // MAXIMUM_TEXTURE1D_LAYERED_LAYERS
        45 | 46 => 32768,            // MAXIMUM_TEXTURE2D_GATHER_*
        47 | 48 => 8192,             // MAXIMUM_TEXTURE3D_*_ALTERNATE
        49 => 32768,                 // MAXIMUM_TEXTURE3D_DEPTH_ALTERNATE
        50 => g.pci_domain as c_int, // PCI_DOMAIN_ID
        51 => 32,                    // TEXTURE_PITCH_ALIGNMENT
        52 | 53 => 32768,            // MAXIMUM_TEXTURECUBEMAP_(LAYERED_)WIDTH
        54 => 2046,                  // MAXIMUM_TEXTURECUBEMAP_LAYERED_LAYERS
        55 => 32768,                 // MAXIMUM_SURFACE1D_WIDTH
        56 => 131072,                // MAXIMUM_SURFACE2D_WIDTH
        57 => 65536,                 // MAXIMUM_SURFACE2D_HEIGHT
        58..=60 => 16384,            // MAXIMUM_SURFACE3D_*
        61 => 32768,                 // MAXIMUM_SURFACE1D_LAYERED_WIDTH
        62 => 2048,                  // MAXIMUM_SURFACE1D_LAYERED_LAYERS
        63 | 64 => 32768,            // MAXIMUM_SURFACE2D_LAYERED_WIDTH / HEIGHT
        65 => 2048,                  // MAXIMUM_SURFACE2D_LAYERED_LAYERS
        66 | 67 => 32768,            // MAXIMUM_SURFACECUBEMAP_(LAYERED_)WIDTH
        68 => 2046,                  // MAXIMUM_SURFACECUBEMAP_LAYERED_LAYERS
        69 => 268_435_456,           // MAXIMUM_TEXTURE1D_LINEAR_WIDTH
        70 => 131072,                // MAXIMUM_TEXTURE2D_LINEAR_WIDTH
        71 => 65000,                 // MAXIMUM_TEXTURE2D_LINEAR_HEIGHT
        72 => 2_097_120,             // MAXIMUM_TEXTURE2D_LINEAR_PITCH
        73 | 74 => 32768,            // MAXIMUM_TEXTURE2D_MIPMAPPED_*
        75 => 9,                     // COMPUTE_CAPABILITY_MAJOR
        76 => 0,                     // COMPUTE_CAPABILITY_MINOR
        77 => 32768,                 // MAXIMUM_TEXTURE1D_MIPMAPPED_WIDTH
        78..=80 => 1,                // STREAM_PRIORITIES, GLOBAL_L1_CACHE, LOCAL_L1_CACHE
        81 => 233_472,               // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        82 => 65536,                 // MAX_REGISTERS_PER_MULTIPROCESSOR
        83 => 1,                     // MANAGED_MEMORY
        85 => g.index as c_int,      // MULTI_GPU_BOARD_GROUP_ID
        87 => 2,                     // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        89..=91 => 1, // CONCURRENT_MANAGED_ACCESS, PREEMPTION, HOST_POINTER_FOR_REGISTERED_MEM
        95 | 96 => 1, // COOPERATIVE_(MULTI_DEVICE_)LAUNCH
        97 => 232_448, // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        99 => 1,      // HOST_REGISTER_SUPPORTED
        102 => 1,     // VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
        103 => 1,     // HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED
        106 => 32,    // MAX_BLOCKS_PER_MULTIPROCESSOR
        107 => 1,     // GENERIC_COMPRESSION_SUPPORTED
        108 => 32_505_856, // MAX_PERSISTING_L2_CACHE_SIZE
        109 => 134_213_632, // MAX_ACCESS_POLICY_WINDOW_SIZE
        110 => 1,     // GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED
        111 => 1024,  // RESERVED_SHARED_MEMORY_PER_BLOCK
        112 => 1,     // SPARSE_CUDA_ARRAY_SUPPORTED
        114 | 115 => 1, // TIMELINE_SEMAPHORE_INTEROP, MEMORY_POOLS_SUPPORTED
        116 | 117 => 1, // GPU_DIRECT_RDMA_SUPPORTED, _FLUSH_WRITES_OPTIONS
        118 => 100,   // GPU_DIRECT_RDMA_WRITES_ORDERING (ALL_DEVICES)
        119 => 1,     // MEMPOOL_SUPPORTED_HANDLE_TYPES (POSIX fd)
        120 | 121 => 1, // CLUSTER_LAUNCH, DEFERRED_MAPPING_CUDA_ARRAY
        122..=125 => 1, // 64_BIT_STREAM_MEM_OPS, WAIT_VALUE_NOR, DMA_BUF, IPC_EVENT
        126 => 4,     // MEM_SYNC_DOMAIN_COUNT
        127 => 1,     // TENSOR_MAP_ACCESS_SUPPORTED
        129 => 1,     // UNIFIED_FUNCTION_POINTERS
        131 | 134 => -1, // NUMA_ID, HOST_NUMA_ID: none
        139 => 0x2330, // GPU_PCI_DEVICE_ID
        140 => 0x16c1, // GPU_PCI_SUBSYSTEM_ID
        _ => 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attr: c_int,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        if !(1..ATTRIBUTE_MAX).contains(&attr) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        out(pi, attribute(attr, gpu(n)))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetProperties(prop: *mut CUdevprop, dev: CUdevice) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        let g = gpu(n);
        let a = |i| attribute(i, g);
        out(
            prop,
            CUdevprop {
                max_threads_per_block: a(1),
                max_threads_dim: [a(2), a(3), a(4)],
                max_grid_size: [a(5), a(6), a(7)],
                shared_mem_per_block: a(8),
                total_constant_memory: a(9),
                simd_width: a(10),
                mem_pitch: a(11),
                regs_per_block: a(12),
                clock_rate: a(13),
                texture_align: a(14),
            },
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetPCIBusId(
    bus_id: *mut c_char,
    len: c_int,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        let n = driver().nvml(dev)?;
        write_str(bus_id, len, &gpu(n).bus_id_short)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetByPCIBusId(
    dev: *mut CUdevice,
    bus_id: *const c_char,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        if bus_id.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let s = CStr::from_ptr(bus_id)
            .to_str()
            .map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
        let nvml = machine().by_bus_id(s).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let ord = d.ordinal_of(nvml).ok_or(CUDA_ERROR_INVALID_DEVICE)?;
        out(dev, ord as CUdevice)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceCanAccessPeer(
    can: *mut c_int,
    dev: CUdevice,
    peer: CUdevice,
) -> CUresult {
    ffi(|| {
        let d = driver();
        let a = d.nvml(dev)?;
        let b = d.nvml(peer)?;
        // NVLink-connected H100s reach each other; a device is not its own peer.
        out(can, (a != b) as c_int)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetLuid(
    _luid: *mut c_char,
    _mask: *mut c_uint,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        driver().nvml(dev)?;
        // LUIDs exist on Windows only.
        Err(CUDA_ERROR_NOT_SUPPORTED)
    })
}
