fn main() {
    // Give the library the soname real clients dlopen it by.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
}
