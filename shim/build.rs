// Defines the glibc version nodes that the shim's `dlsym` is exported under (see hook.rs): the
// default GLIBC_2.34 and the architecture's original version, so that programs built against
// either glibc bind to the shim's dlsym.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let old = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "GLIBC_2.17",
        _ => "GLIBC_2.2.5",
    };
    let dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    let path = format!("{dir}/dlsym.map");
    std::fs::write(&path, format!("{old} {{ }};\nGLIBC_2.34 {{ }} {old};\n"))
        .expect("write version script");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={path}");
}
