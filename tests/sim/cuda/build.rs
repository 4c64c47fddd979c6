fn main() {
    // Give the library the soname real clients dlopen it by.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
    // Bind our own functions internally, as the real driver does: cuGetProcAddress must hand back
    // the driver's functions, not a preloaded library's definitions of the same names.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
