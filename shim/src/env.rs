//! The process environment as the shim reads and writes it: through the C library directly,
//! without Rust's environment lock (a forked child may inherit that lock taken).

use std::ffi::CStr;

/// The value of `name`, if set.
pub fn get(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns NULL or a NUL-terminated string owned by the environment.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(CStr::from_ptr(p).to_bytes())
        }
    }
}

/// The value of `name` as text (lossy), if set.
pub fn get_string(name: &CStr) -> Option<String> {
    get(name).map(|b| String::from_utf8_lossy(b).into_owned())
}

pub fn set(name: &CStr, value: &str) {
    let v = std::ffi::CString::new(value).unwrap_or_default();
    // SAFETY: NUL-terminated strings; glibc copies them.
    unsafe { libc::setenv(name.as_ptr(), v.as_ptr(), 1) };
}

pub fn unset(name: &CStr) {
    // SAFETY: a NUL-terminated name.
    unsafe { libc::unsetenv(name.as_ptr()) };
}
