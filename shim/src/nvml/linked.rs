//! Programs linked with `-lnvidia-ml` bind NVML's names in the global scope, where the
//! preloaded shim comes first: each wrapped name is exported (see `hooks.rs`, `linked`). So does
//! the real library, for a few of its own calls through its PLT (measured on 470-555:
//! `nvmlInit_v2` tail-calls `nvmlInitWithFlags`, the v1 `nvmlDeviceGetHandleByIndex` calls
//! `_v2`, the code around the export table calls `nvmlDeviceGetHandleByIndex_v2` and others). The exported entries tell the two
//! apart by their return address: inside the real library's code (`LO..HI`), the call is the
//! driver's own and goes straight to the real function, as it would without the shim.
//!
//! The range is found at the first initialisation (`nvmlInit*`, or the export table, which
//! needs none), before the real function runs, so no call the driver makes to itself comes
//! first. Until then the range is empty (`LO` > `HI`): every call goes to the wrapper. Each
//! bound is one word, so a reader that sees one new and one old bound still sees an empty
//! range.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::real;

/// The real NVML's code: `LO..HI`; empty until known.
pub static LO: AtomicUsize = AtomicUsize::new(usize::MAX);
pub static HI: AtomicUsize = AtomicUsize::new(0);

/// Finds the real library's code, once.
pub(super) fn note() {
    if HI.load(Ordering::Relaxed) != 0 {
        return;
    }
    // In every generation; any of the library's functions would do.
    let p = real::NVML.sym(c"nvmlErrorString");
    if p.is_null() {
        return;
    }
    if let Some((lo, hi)) = code_of(p as usize) {
        LO.store(lo, Ordering::Relaxed);
        HI.store(hi, Ordering::Release);
        crate::debug!("nvml: the real library's code is {lo:#x}..{hi:#x}");
    }
}

/// The span of the executable segments of the loaded object that contains `addr`.
fn code_of(addr: usize) -> Option<(usize, usize)> {
    struct Find {
        addr: usize,
        span: Option<(usize, usize)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for each object and our `Find`.
        let (info, find) = unsafe { (&*info, &mut *(data as *mut Find)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: the object's program headers, `dlpi_phnum` of them.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let base = info.dlpi_addr as usize;
        let segment = |p: &libc::Elf64_Phdr| {
            let start = base + p.p_vaddr as usize;
            (start, start + p.p_memsz as usize)
        };
        let loads = || phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        if !loads().any(|p| {
            let (a, b) = segment(p);
            (a..b).contains(&find.addr)
        }) {
            return 0;
        }
        let code = loads().filter(|p| p.p_flags & libc::PF_X != 0).map(segment);
        find.span = code.fold(None, |acc, (a, b)| match acc {
            None => Some((a, b)),
            Some((lo, hi)) => Some((lo.min(a), hi.max(b))),
        });
        1
    }
    let mut find = Find { addr, span: None };
    // SAFETY: the callback only reads what the loader hands it and writes our `find`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut find as *mut Find as *mut c_void) };
    find.span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_of_a_loaded_object() {
        let f = code_of as *const () as usize;
        let (lo, hi) = code_of(f).expect("this test's own code");
        assert!(lo <= f && f < hi);
        let (clo, chi) = code_of(libc::getpid as *const () as usize).expect("the C library");
        assert!(!(clo..chi).contains(&f), "another object");
        assert_eq!(code_of(0), None);
    }
}
