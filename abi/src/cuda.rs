//! The CUDA driver API's types, result codes and record layouts that genv needs, hand-written
//! from the driver API's documented layouts (the shim reads the leading fields of some records,
//! the simulated driver implements them).

use std::ffi::{c_uint, c_void};

pub type CUresult = i32;
pub type CUdevice = i32;
pub type CUdeviceptr = u64;
/// The 32-bit device pointer of the pre-3.2 ABI (`cuMemAlloc` without `_v2`).
pub type CUdeviceptrV1 = u32;
pub type CUcontext = *mut c_void;
pub type CUstream = *mut c_void;
pub type CUevent = *mut c_void;
pub type CUmodule = *mut c_void;
pub type CUfunction = *mut c_void;
pub type CUarray = *mut c_void;
pub type CUmipmappedArray = *mut c_void;
pub type CUmemoryPool = *mut c_void;
pub type CUmemGenericAllocationHandle = u64;

pub const CUDA_SUCCESS: CUresult = 0;
pub const CUDA_ERROR_INVALID_VALUE: CUresult = 1;
pub const CUDA_ERROR_OUT_OF_MEMORY: CUresult = 2;
pub const CUDA_ERROR_NOT_INITIALIZED: CUresult = 3;
pub const CUDA_ERROR_NO_DEVICE: CUresult = 100;
pub const CUDA_ERROR_INVALID_DEVICE: CUresult = 101;
pub const CUDA_ERROR_INVALID_CONTEXT: CUresult = 201;
pub const CUDA_ERROR_INVALID_HANDLE: CUresult = 400;
pub const CUDA_ERROR_NOT_FOUND: CUresult = 500;
pub const CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE: CUresult = 708;
pub const CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: CUresult = 712;
pub const CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: CUresult = 713;
pub const CUDA_ERROR_NOT_SUPPORTED: CUresult = 801;
pub const CUDA_ERROR_UNKNOWN: CUresult = 999;

/// Special stream handles: the legacy and the per-thread default streams.
pub const CU_STREAM_LEGACY: usize = 1;
pub const CU_STREAM_PER_THREAD: usize = 2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUuuid {
    pub bytes: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUdevprop {
    pub max_threads_per_block: i32,
    pub max_threads_dim: [i32; 3],
    pub max_grid_size: [i32; 3],
    pub shared_mem_per_block: i32,
    pub total_constant_memory: i32,
    pub simd_width: i32,
    pub mem_pitch: i32,
    pub regs_per_block: i32,
    pub clock_rate: i32,
    pub texture_align: i32,
}

/// `CUmemLocation`: `type` is `CU_MEM_LOCATION_TYPE_*`, `id` a device ordinal for DEVICE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CUmemLocation {
    pub kind: u32,
    pub id: i32,
}
pub const CU_MEM_LOCATION_TYPE_DEVICE: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CUmemAllocationProp {
    /// `CU_MEM_ALLOCATION_TYPE_PINNED` (1) is the only valid type.
    pub kind: u32,
    pub requested_handle_types: u32,
    pub location: CUmemLocation,
    pub win32_handle_meta_data: *mut c_void,
    pub compression_type: u8,
    pub gpu_direct_rdma_capable: u8,
    pub usage: u16,
    pub reserved: [u8; 4],
}
pub const CU_MEM_ALLOCATION_TYPE_PINNED: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUmemAccessDesc {
    pub location: CUmemLocation,
    /// `CU_MEM_ACCESS_FLAGS_PROT_NONE` 0, `READ` 1, `READWRITE` 3.
    pub flags: u32,
}

/// The leading fields of `CUmemPoolProps` (the rest is reserved padding we never read).
#[repr(C)]
pub struct CUmemPoolProps {
    pub alloc_type: u32,
    pub handle_types: u32,
    pub location: CUmemLocation,
    pub win32_security_attributes: *mut c_void,
    pub max_size: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct CudaArrayDescriptor {
    pub width: usize,
    pub height: usize,
    pub format: u32,
    pub num_channels: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CudaArray3dDescriptor {
    pub width: usize,
    pub height: usize,
    pub depth: usize,
    pub format: u32,
    pub num_channels: u32,
    pub flags: u32,
}

/// The pre-3.2 descriptors, with `unsigned int` extents.
#[repr(C)]
pub struct CudaArrayDescriptorV1 {
    pub width: c_uint,
    pub height: c_uint,
    pub format: u32,
    pub num_channels: c_uint,
}

#[repr(C)]
pub struct CudaArray3dDescriptorV1 {
    pub width: c_uint,
    pub height: c_uint,
    pub depth: c_uint,
    pub format: u32,
    pub num_channels: c_uint,
    pub flags: c_uint,
}

/// `CUDA_ARRAY3D_*` flags that change what an array holds: the depth of a layered or cubemap
/// array counts layers (or faces), which do not shrink with the mipmap level.
pub const CUDA_ARRAY3D_LAYERED: c_uint = 0x01;
pub const CUDA_ARRAY3D_CUBEMAP: c_uint = 0x04;

/// `cuGetProcAddress` answers for the legacy and per-thread default streams: the stream handles
/// 0 (NULL), `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD` mean "the current context's".
pub const LAST_SPECIAL_STREAM: usize = CU_STREAM_PER_THREAD;

/// Bytes of one channel of a `CUarray_format`, for the formats with whole-byte texels.
pub fn format_bytes(format: u32) -> Option<u64> {
    Some(match format {
        0x01 | 0x08 => 1,               // (UN)SIGNED_INT8
        0x02 | 0x09 | 0x10 => 2,        // (UN)SIGNED_INT16, HALF
        0x03 | 0x0a | 0x20 | 0x50 => 4, // (UN)SIGNED_INT32, FLOAT, UNORM_INT_101010_2
        0xc0 | 0xc6 => 1,               // UNORM/SNORM_INT8X1
        0xc1 | 0xc7 | 0xc3 | 0xc9 => 2, // INT8X2, INT16X1
        0xc2 | 0xc8 | 0xc4 | 0xca => 4, // INT8X4, INT16X2
        0xc5 | 0xcb => 8,               // INT16X4
        _ => return None,
    })
}
