fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("OUT_DIR").unwrap();
    let path = format!("{dir}/dlsym.map");
    std::fs::write(&path, "GLIBC_2.2.5 { };\nGLIBC_2.34 { } GLIBC_2.2.5;\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={path}");
}
