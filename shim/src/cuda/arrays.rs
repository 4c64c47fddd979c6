//! CUDA arrays and mipmapped arrays: device memory without an address, counted at the size their
//! descriptor implies (recorded by handle).

use super::*;

static ARRAYS: Fresh<Map> = Fresh::new(Map::new);
static MIPMAPS: Fresh<Map> = Fresh::new(Map::new);

pub(super) fn after_fork_child() {
    ARRAYS.forget();
    MIPMAPS.forget();
}

/// Bytes per channel counted for a `CUarray_format` this shim does not know (a newer one).
const UNKNOWN_FORMAT_BYTES: u64 = 4;
/// Mipmap levels counted at most (a 64-bit extent has no more).
const MAX_LEVELS: u32 = 64;

/// Bytes of an array with `levels` mipmap levels (1 for a plain array). Layers and cube faces
/// (the depth of a layered / cubemap array) do not shrink with the level.
pub fn array_bytes(
    w: u64,
    h: u64,
    d: u64,
    format: c_uint,
    channels: c_uint,
    flags: c_uint,
    levels: u32,
) -> u64 {
    let per_channel = format_bytes(format).unwrap_or(UNKNOWN_FORMAT_BYTES);
    let texel = per_channel.saturating_mul(channels.max(1) as u64);
    let layers = flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP) != 0;
    (0..levels.clamp(1, MAX_LEVELS)).fold(0u64, |acc, l| {
        let sw = (w >> l).max(1);
        let sh = if h == 0 { 1 } else { (h >> l).max(1) };
        let sd = if d == 0 {
            1
        } else if layers {
            d
        } else {
            (d >> l).max(1)
        };
        acc.saturating_add(
            texel
                .saturating_mul(sw)
                .saturating_mul(sh)
                .saturating_mul(sd),
        )
    })
}

/// The extents of any array descriptor (2D or 3D, either width of integers).
pub(super) trait Desc {
    /// (width, height, depth, format, channels, flags)
    fn extents(&self) -> (u64, u64, u64, c_uint, c_uint, c_uint);
}

/// `Desc` of a descriptor type: 2D ones have no depth and no flags.
macro_rules! desc {
    ($t:ty, 2) => {
        impl Desc for $t {
            fn extents(&self) -> (u64, u64, u64, c_uint, c_uint, c_uint) {
                (
                    self.width as u64,
                    self.height as u64,
                    0,
                    self.format,
                    self.num_channels,
                    0,
                )
            }
        }
    };
    ($t:ty, 3) => {
        impl Desc for $t {
            fn extents(&self) -> (u64, u64, u64, c_uint, c_uint, c_uint) {
                let (w, h, d) = (self.width as u64, self.height as u64, self.depth as u64);
                (w, h, d, self.format, self.num_channels, self.flags)
            }
        }
    };
}

desc!(CudaArrayDescriptor, 2);
desc!(CudaArrayDescriptorV1, 2);
desc!(CudaArray3dDescriptor, 3);
desc!(CudaArray3dDescriptorV1, 3);

/// An array (`mipmap_levels` None) or a mipmapped array of descriptor `desc`, made by `call`
/// into `*handle`. Without a descriptor the driver refuses it.
///
/// # Safety
/// `handle` and `desc` as the array creation functions take them.
pub(super) unsafe fn create<D: Desc, H>(
    handle: *mut *mut H,
    desc: *const D,
    mipmap_levels: Option<u32>,
    call: impl FnOnce() -> CUresult,
) -> CUresult {
    // SAFETY: the caller's descriptor, read as the driver reads it.
    let Some(d) = (unsafe { desc.as_ref() }) else {
        return call();
    };
    let (w, h, z, format, channels, flags) = d.extents();
    let bytes = array_bytes(w, h, z, format, channels, flags, mipmap_levels.unwrap_or(1));
    let map = if mipmap_levels.is_some() {
        &MIPMAPS
    } else {
        &ARRAYS
    };
    // SAFETY: written by the driver on success.
    memory::alloc_in(map, bytes, devices::current_host, call, || unsafe {
        *handle as u64
    })
}

pub(super) fn destroy(
    handle: *mut c_void,
    mipmapped: bool,
    call: impl FnOnce() -> CUresult,
) -> CUresult {
    memory::free_in(
        if mipmapped { &MIPMAPS } else { &ARRAYS },
        handle as u64,
        call,
    )
}
