//! `cuGetProcAddress`: after the real one answered, when the variant table says the answer is
//! an entry point we wrap, hand back our wrapper of exactly that variant instead. Names the
//! table does not know (newer drivers), unknown flags, and everything not wrapped keep the
//! driver's pointer, so unwrapped functions cost nothing.

use super::*;
use genv_abi::procaddr;

/// # Safety
/// The arguments as the real `cuGetProcAddress` took them, after it succeeded.
pub(super) unsafe fn wrap(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) {
    // SAFETY: the caller's pointers: `pfn` was just written by the driver, `symbol` is the
    // NUL-terminated name it looked up.
    unsafe {
        if symbol.is_null()
            || pfn.is_null()
            || (*pfn).is_null()
            || flags > procaddr::CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
            || view::bypassed()
        {
            return;
        }
        let Ok(name) = CStr::from_ptr(symbol).to_str() else {
            return;
        };
        let Ok(sym) = procaddr::resolve(name, version, flags) else {
            return;
        };
        if let Some(h) = table(sym.as_bytes()) {
            h.real.offer(*pfn);
            crate::debug!("cuGetProcAddress({name}, {version}, {flags}) -> shim's {sym}");
            *pfn = h.wrapper;
        }
    }
}
