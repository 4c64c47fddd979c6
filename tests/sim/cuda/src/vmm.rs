//! Virtual memory management: physical allocations (`cuMemCreate`) are memfds, reserved ranges
//! are PROT_NONE mappings, and `cuMemMap` maps a memfd over part of a reservation; access stays
//! PROT_NONE until `cuMemSetAccess`, as on the real device.

use crate::state::*;
use genv_abi::cuda::*;
use std::ffi::c_int;

pub const GRANULARITY: u64 = 2 << 20;

fn aligned(x: u64) -> bool {
    x & (GRANULARITY - 1) == 0
}

/// Validates an allocation's properties; returns the NVML index of its device.
fn check_prop(d: &Driver, prop: *const CUmemAllocationProp) -> Result<usize, CUresult> {
    let p = unsafe { prop.as_ref() }.ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if p.kind != CU_MEM_ALLOCATION_TYPE_PINNED || p.location.kind != CU_MEM_LOCATION_TYPE_DEVICE {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // POSIX fd and fabric handles are the ones a Linux H100 offers.
    if p.requested_handle_types & !(1 | 8) != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    d.nvml(p.location.id)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetAllocationGranularity(
    granularity: *mut usize,
    prop: *const CUmemAllocationProp,
    option: c_int,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        check_prop(&d, prop)?;
        // CU_MEM_ALLOC_GRANULARITY_MINIMUM 0, RECOMMENDED 1.
        if option != 0 && option != 1 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        out(granularity, GRANULARITY as usize)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemCreate(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    flags: u64,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let nvml = check_prop(&d, prop)?;
        let size = size as u64;
        if handle.is_null() || flags != 0 || size == 0 || !aligned(size) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if !reserve(nvml, size) {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let fd = libc::memfd_create(c"genv-sim-cuda-vmm".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 || libc::ftruncate(fd, size as libc::off_t) != 0 {
            if fd >= 0 {
                libc::close(fd);
            }
            unreserve(nvml, size);
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let h = d.handle() as u64;
        d.phys.insert(
            h,
            Phys {
                fd,
                size,
                nvml,
                prop: *prop,
                refs: 1,
            },
        );
        out(handle, h)
    })
}

impl Driver {
    fn mapping_count(&self, handle: u64) -> u32 {
        self.mappings
            .values()
            .filter(|m| m.handle == handle)
            .count() as u32
    }

    /// Drops one reference to a physical allocation, freeing it with the last.
    fn phys_unref(&mut self, handle: u64) {
        let gone = match self.phys.get_mut(&handle) {
            Some(p) => {
                p.refs = p.refs.saturating_sub(1);
                p.refs == 0
            }
            None => false,
        };
        if gone {
            if let Some(p) = self.phys.remove(&handle) {
                unsafe { libc::close(p.fd) };
                unreserve(p.nvml, p.size);
            }
        }
    }

    /// Puts an inaccessible anonymous mapping back over `[ptr, ptr+size)`, keeping it reserved.
    fn unmap_range(&mut self, ptr: u64, size: u64) {
        unsafe {
            libc::mmap(
                ptr as *mut libc::c_void,
                size as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        let inside: Vec<u64> = self
            .mappings
            .range(ptr..ptr + size)
            .map(|(&k, _)| k)
            .collect();
        for k in inside {
            if let Some(m) = self.mappings.remove(&k) {
                self.phys_unref(m.handle);
            }
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemRelease(handle: CUmemGenericAllocationHandle) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let refs = d.phys.get(&handle).ok_or(CUDA_ERROR_INVALID_VALUE)?.refs;
        // The references left beyond the mappings are the caller's handles.
        if refs <= d.mapping_count(handle) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        d.phys_unref(handle);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut CUmemGenericAllocationHandle,
    addr: *mut std::ffi::c_void,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let p = addr as u64;
        let h = match d.mappings.range(..=p).next_back() {
            Some((&b, m)) if p < b + m.size => m.handle,
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        out(handle, h)?;
        if let Some(ph) = d.phys.get_mut(&h) {
            ph.refs += 1;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetAllocationPropertiesFromHandle(
    prop: *mut CUmemAllocationProp,
    handle: CUmemGenericAllocationHandle,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let p = d.phys.get(&handle).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        out(prop, p.prop)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAddressReserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    alignment: usize,
    addr: CUdeviceptr,
    flags: u64,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let size = size as u64;
        let align = if alignment == 0 {
            GRANULARITY
        } else {
            alignment as u64
        };
        if ptr.is_null() || flags != 0 || size == 0 || !aligned(size) || !align.is_power_of_two() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // Over-reserve, then trim to the alignment asked for.
        let len = size.checked_add(align).ok_or(CUDA_ERROR_OUT_OF_MEMORY)? as usize;
        let raw = libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let raw = raw as u64;
        let start = (raw + align - 1) & !(align - 1);
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, (start - raw) as usize);
        }
        let end = raw + len as u64;
        if end > start + size {
            libc::munmap(
                (start + size) as *mut libc::c_void,
                (end - start - size) as usize,
            );
        }
        d.reserved.insert(start, size);
        out(ptr, start)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        if d.reserved.get(&ptr) != Some(&(size as u64)) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        d.unmap_range(ptr, size as u64);
        d.reserved.remove(&ptr);
        libc::munmap(ptr as *mut libc::c_void, size);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: CUmemGenericAllocationHandle,
    flags: u64,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let (size, offset) = (size as u64, offset as u64);
        if flags != 0 || size == 0 || !aligned(size) || !aligned(offset) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let fd = match d.phys.get(&handle) {
            Some(p) if offset + size <= p.size => p.fd,
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        let inside = matches!(d.reserved.range(..=ptr).next_back(),
            Some((&b, &s)) if ptr + size <= b + s);
        if !inside || !aligned(ptr) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let overlaps = d
            .mappings
            .range(..ptr + size)
            .next_back()
            .is_some_and(|(&b, m)| b + m.size > ptr);
        if overlaps {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = libc::mmap(
            ptr as *mut libc::c_void,
            size as usize,
            libc::PROT_NONE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            offset as libc::off_t,
        );
        if p == libc::MAP_FAILED {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        d.mappings.insert(
            ptr,
            Mapping {
                size,
                handle,
                access: 0,
            },
        );
        if let Some(ph) = d.phys.get_mut(&handle) {
            ph.refs += 1;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        if !d.mappings.contains_key(&ptr) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        d.unmap_range(ptr, size as u64);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemSetAccess(
    ptr: CUdeviceptr,
    size: usize,
    desc: *const CUmemAccessDesc,
    count: usize,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        if desc.is_null() || count == 0 || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut access = 0;
        for a in std::slice::from_raw_parts(desc, count) {
            if a.location.kind != CU_MEM_LOCATION_TYPE_DEVICE || ![0, 1, 3].contains(&a.flags) {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            d.nvml(a.location.id)?;
            access |= a.flags;
        }
        // The whole range must be mapped, by mappings laid end to end.
        let keys: Vec<u64> = d
            .mappings
            .range(ptr..ptr + size as u64)
            .map(|(&k, _)| k)
            .collect();
        let mut at = ptr;
        for &k in &keys {
            if k != at {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            at += d.mappings[&k].size;
        }
        if at < ptr + size as u64 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let prot = match access {
            0 => libc::PROT_NONE,
            1 => libc::PROT_READ,
            _ => libc::PROT_READ | libc::PROT_WRITE,
        };
        libc::mprotect(ptr as *mut libc::c_void, size, prot);
        for k in keys {
            if let Some(m) = d.mappings.get_mut(&k) {
                m.access = access;
            }
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetAccess(
    flags: *mut u64,
    location: *const CUmemLocation,
    ptr: CUdeviceptr,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        if location.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match d.mappings.range(..=ptr).next_back() {
            Some((&b, m)) if ptr < b + m.size => out(flags, m.access as u64),
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}
