//! Writes, for each measured NVML generation (`genv_abi::nvml::export::GENERATIONS`), a copy of
//! the simulated library whose dynamic symbol table lacks the functions that generation's real
//! library lacks, so that clients probing for a symbol (pynvml falls back from `_v3` to `_v2`,
//! nvml-wrapper reports a missing function) find what they would on that driver:
//!
//!     genv-sim-generations target/release/libnvidia_ml.so target/sim
//!
//! gives `target/sim/nvml-<major>/libnvidia-ml.so.1` (and `libnvidia-ml.so`). A missing function
//! is renamed in `.dynstr` (its first letter becomes `_`): the loader then finds nothing under
//! its name, and every other symbol, string and hash stays where it was (checked). Play the
//! generation with `GENV_SIM_DRIVER=<major>` and that directory first on `LD_LIBRARY_PATH`.

use std::path::Path;
use std::process::ExitCode;

use genv_abi::nvml::export::GENERATIONS;

const SHT_DYNSYM: u32 = 11;

fn u16_at(b: &[u8], o: usize) -> Result<usize, String> {
    let s = b.get(o..o + 2).ok_or("truncated ELF")?;
    Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
}

fn u32_at(b: &[u8], o: usize) -> Result<usize, String> {
    let s = b.get(o..o + 4).ok_or("truncated ELF")?;
    Ok(u32::from_le_bytes(s.try_into().unwrap()) as usize)
}

fn u64_at(b: &[u8], o: usize) -> Result<usize, String> {
    let s = b.get(o..o + 8).ok_or("truncated ELF")?;
    Ok(u64::from_le_bytes(s.try_into().unwrap()) as usize)
}

/// Where each dynamic symbol's name starts in the file, with the name.
fn dynamic_names(elf: &[u8]) -> Result<Vec<(usize, Vec<u8>)>, String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let (shoff, shentsize, shnum) = (u64_at(elf, 0x28)?, u16_at(elf, 0x3a)?, u16_at(elf, 0x3c)?);
    let section = |i: usize| shoff + i * shentsize;
    let dynsym = (0..shnum)
        .map(section)
        .find(|&s| u32_at(elf, s + 4).ok() == Some(SHT_DYNSYM as usize))
        .ok_or("no .dynsym")?;
    let (off, size, link, entsize) = (
        u64_at(elf, dynsym + 0x18)?,
        u64_at(elf, dynsym + 0x20)?,
        u32_at(elf, dynsym + 0x28)?,
        u64_at(elf, dynsym + 0x38)?,
    );
    let strtab = u64_at(elf, section(link) + 0x18)?;
    let mut names = Vec::new();
    for i in 0..size / entsize.max(1) {
        let at = strtab + u32_at(elf, off + i * entsize)?;
        let rest = elf.get(at..).ok_or("symbol name past the end")?;
        let len = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or("unterminated name")?;
        names.push((at, rest[..len].to_vec()));
    }
    Ok(names)
}

/// Renames `absent` away in `elf`; every other dynamic name must come out unchanged.
fn patch(elf: &mut [u8], absent: &[&str]) -> Result<(), String> {
    let before = dynamic_names(elf)?;
    for name in absent {
        let &(at, _) = before
            .iter()
            .find(|(_, n)| n == name.as_bytes())
            .ok_or_else(|| format!("the simulated NVML does not define {name}"))?;
        elf[at] = b'_';
    }
    let after = dynamic_names(elf)?;
    for ((_, a), (_, b)) in before.iter().zip(&after) {
        let renamed = absent.iter().any(|n| n.as_bytes() == &a[..]);
        if renamed == (a == b) {
            return Err(format!(
                "renaming changed {:?} (a shared string?)",
                String::from_utf8_lossy(a)
            ));
        }
    }
    Ok(())
}

fn write(dir: &Path, elf: &[u8]) -> Result<(), String> {
    let e = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(e)?;
    // Copy then rename: tests may be loading the old file meanwhile.
    let tmp = dir.join(format!(".libnvidia-ml.so.1.{}", std::process::id()));
    std::fs::write(&tmp, elf).map_err(e)?;
    std::fs::rename(&tmp, dir.join("libnvidia-ml.so.1")).map_err(e)?;
    let link = dir.join("libnvidia-ml.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("libnvidia-ml.so.1", &link).map_err(e)
}

fn run(lib: &Path, out: &Path) -> Result<(), String> {
    let elf = std::fs::read(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    for g in GENERATIONS {
        let absent: Vec<&str> = GENERATIONS
            .iter()
            .filter(|later| later.major > g.major)
            .flat_map(|later| later.adds.iter().copied())
            .collect();
        let mut copy = elf.clone();
        patch(&mut copy, &absent).map_err(|e| format!("{} for {}: {e}", lib.display(), g.major))?;
        write(&out.join(format!("nvml-{}", g.major)), &copy)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: genv-sim-generations <built libnvidia_ml.so> <dir>");
        return ExitCode::from(2);
    }
    match run(Path::new(&args[1]), Path::new(&args[2])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("genv-sim-generations: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{c_int, c_void, CString};
    use std::path::PathBuf;

    /// The real `libnvidia-ml.so.<version>` scripts/fetch-nvidia-smi.sh keeps for `major`.
    fn real_library(major: u32) -> Option<PathBuf> {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../target");
        let dir = target.join(format!("nvidia-smi-{major}/usr/lib"));
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                } else if name.starts_with("libnvidia-ml.so.") && name.matches('.').count() > 3 {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The measured table of generations, against the real libraries: the version, the export
    /// table's size and NULL slots (nvmlInternalGetExportTable needs no GPU and no nvmlInit),
    /// and which of the simulated functions each library defines.
    #[test]
    fn generations_match_the_real_libraries() {
        let built = std::env::current_exe().unwrap();
        let sim = built
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("libnvidia_ml.so");
        let sim_names: Vec<String> = dynamic_names(&std::fs::read(&sim).expect("the built sim"))
            .unwrap()
            .into_iter()
            .map(|(_, n)| String::from_utf8(n).unwrap())
            .filter(|n| n.starts_with("nvml"))
            .collect();
        let mut checked = 0;
        for g in GENERATIONS {
            let Some(lib) = real_library(g.major) else {
                eprintln!(
                    "{}: no real library (scripts/fetch-nvidia-smi.sh): skipped",
                    g.major
                );
                continue;
            };
            assert!(
                lib.to_string_lossy().ends_with(g.driver_version),
                "{} is not the measured {}",
                lib.display(),
                g.driver_version
            );
            let path = CString::new(lib.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: dlopen/dlsym with NUL-terminated strings; the table call has NVML's C
            // signature, and the table holds `size / 8` pointer-sized slots.
            unsafe {
                let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                assert!(!h.is_null(), "dlopen {}", lib.display());
                type Get = unsafe extern "C" fn(*mut *const usize, *const [u8; 16]) -> c_int;
                let get = libc::dlsym(h, c"nvmlInternalGetExportTable".as_ptr());
                let get: Get = std::mem::transmute::<*mut c_void, Get>(get);
                let mut t: *const usize = std::ptr::null();
                let smi = genv_abi::nvml::export::SMI_TABLE_UUID;
                assert_eq!(get(&mut t, &smi), 0);
                assert_eq!(*t, g.size, "{}: size", g.major);
                for slot in 1..g.slots() {
                    assert_eq!(*t.add(slot) != 0, g.fills(slot), "{}: slot {slot}", g.major);
                }
                for name in &sim_names {
                    let c = CString::new(name.as_str()).unwrap();
                    let has = !libc::dlsym(h, c.as_ptr()).is_null();
                    assert_eq!(has, g.has(name), "{}: {name}", g.major);
                }
                libc::dlclose(h);
            }
            checked += 1;
        }
        eprintln!("{checked} real libraries checked");
    }

    #[test]
    fn renames_only_the_absent() {
        let built = std::env::current_exe().unwrap();
        let sim = built
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("libnvidia_ml.so");
        let mut elf = std::fs::read(&sim).expect("the built sim");
        let names = |e: &[u8]| -> Vec<Vec<u8>> {
            dynamic_names(e)
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        let before = names(&elf);
        patch(&mut elf, &["nvmlDeviceGetPciInfoExt"]).unwrap();
        let after = names(&elf);
        assert!(after.contains(&b"_vmlDeviceGetPciInfoExt".to_vec()));
        assert!(!after.contains(&b"nvmlDeviceGetPciInfoExt".to_vec()));
        assert_eq!(before.len(), after.len());
        assert!(patch(&mut elf, &["nvmlNoSuchFunction"]).is_err());
        assert!(dynamic_names(b"not an ELF file").is_err());
    }
}
