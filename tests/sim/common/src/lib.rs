//! The simulated GPU machine shared by the test-double `libcuda.so.1` and `libnvidia-ml.so.1`.
//!
//! Two parts:
//! - [`machine`]: the shape of the machine, from `GENV_SIM_GPUS` (default 4),
//!   `GENV_SIM_GPU_MEMORY` (default `81559mi`), `GENV_SIM_CUDA_ORDER` (`pci`, `reverse`, or a
//!   permutation such as `2,0,3,1`: CUDA ordinal -> NVML index, since the real driver orders
//!   devices fastest-first and NVML by PCI bus) and `GENV_SIM_CONTEXT_MEMORY` (what a CUDA
//!   context costs on a device, default 0). Names, UUIDs, serials and PCI bus ids are stable.
//!   `GENV_SIM_DRIVER` (470, 525, 535, 550 or 555; default 535) picks the driver generation
//!   the machine plays (`genv_abi::nvml::export::GENERATIONS`: version strings, CUDA version,
//!   nvidia-smi's export table, which NVML functions exist); `GENV_SIM_CUDA_VERSION` (e.g.
//!   13000) overrides the CUDA version it reports.
//! - [`Ledger`]: a small memory-mapped file in `GENV_SIM_DIR` (default `/tmp/genv-sim`) where every
//!   process records what it holds on each device, so that one process's allocations show up in
//!   another's NVML memory use and process list, as on a real GPU. Each process owns a slot and
//!   holds a POSIX record lock on the slot's byte; the kernel drops the lock when the process
//!   dies, so a dead process's memory is released (pid reuse cannot keep it alive).

use genv_abi::nvml::export::{self, Generation};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Most devices the simulated machine can have.
pub const MAX_GPUS: usize = 32;
/// Process slots in the ledger.
pub const MAX_PROCS: usize = 1024;
const MAGIC: u64 = 0x6765_6e76_5349_4d31; // "genvSIM1"
const LOCK_BASE: i64 = 1 << 30; // record locks live past the data, one byte per slot

/// One simulated GPU.
#[derive(Debug, Clone)]
pub struct Gpu {
    /// NVML index (PCI bus order).
    pub index: u32,
    pub name: String,
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
    pub uuid: String,
    pub uuid_bytes: [u8; 16],
    pub serial: String,
    pub pci_domain: u32,
    pub pci_bus: u32,
    pub pci_device: u32,
    /// `00000000:18:00.0` (NVML `busId`)
    pub bus_id: String,
    /// `0000:18:00.0` (NVML `busIdLegacy`, CUDA `cuDeviceGetPCIBusId`)
    pub bus_id_short: String,
    pub total_memory: u64,
}

/// The simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub gpus: Vec<Gpu>,
    /// CUDA ordinal -> NVML index, before `CUDA_VISIBLE_DEVICES` / `CUDA_DEVICE_ORDER`.
    pub cuda_order: Vec<usize>,
    /// Bytes a CUDA context takes on its device.
    pub context_memory: u64,
    /// The driver generation played (`GENV_SIM_DRIVER`).
    pub driver: &'static Generation,
    pub driver_version: &'static str,
    /// As `cuDriverGetVersion` reports it (12020 = CUDA 12.2): the generation's, unless
    /// `GENV_SIM_CUDA_VERSION` says otherwise.
    pub cuda_version: i32,
}

/// The generation of `GENV_SIM_DRIVER` (default 535); an unknown one is said once and replaced
/// by the default, so that a typo cannot pass for a measured driver silently.
fn driver_from_env() -> &'static Generation {
    const DEFAULT: u32 = 535;
    let Ok(v) = std::env::var("GENV_SIM_DRIVER") else {
        return export::generation(DEFAULT).expect("the default generation is measured");
    };
    match v.trim().parse().ok().and_then(export::generation) {
        Some(g) => g,
        None => {
            let known: Vec<String> = export::GENERATIONS
                .iter()
                .map(|g| g.major.to_string())
                .collect();
            eprintln!(
                "genv-sim: GENV_SIM_DRIVER={v:?} is not one of {}; playing {DEFAULT}",
                known.join(", ")
            );
            export::generation(DEFAULT).expect("the default generation is measured")
        }
    }
}

/// Parses `42mi`, `4g`, `44040192`, `81559mi`: units `b k m g ki mi gi` (k = 1000, ki = 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "m" => 1000 * 1000,
        "g" => 1000 * 1000 * 1000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn fnv(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Machine {
    fn from_env() -> Machine {
        let n = std::env::var("GENV_SIM_GPUS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(4)
            .min(MAX_GPUS);
        let total = std::env::var("GENV_SIM_GPU_MEMORY")
            .ok()
            .and_then(|v| parse_size(&v))
            .unwrap_or(81559 << 20);
        let context_memory = std::env::var("GENV_SIM_CONTEXT_MEMORY")
            .ok()
            .and_then(|v| parse_size(&v))
            .unwrap_or(0);
        let gpus = (0..n)
            .map(|i| {
                let key = format!("genv-sim-gpu-{i}");
                let a = fnv(key.as_bytes(), 1).to_be_bytes();
                let b = fnv(key.as_bytes(), 2).to_be_bytes();
                let mut u = [0u8; 16];
                u[..8].copy_from_slice(&a);
                u[8..].copy_from_slice(&b);
                let hex: String = u.iter().map(|x| format!("{x:02x}")).collect();
                let uuid = format!(
                    "GPU-{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                );
                // 0x18, 0x28, … like a real 8-GPU board; past 0xE8 continue below 0x18 so that every
                // bus number stays a valid byte and distinct.
                let bus = if i < 14 {
                    0x18 + 0x10 * i as u32
                } else {
                    1 + (i as u32 - 14)
                };
                Gpu {
                    index: i as u32,
                    name: "NVIDIA H100 80GB HBM3".to_string(),
                    uuid,
                    uuid_bytes: u,
                    serial: format!(
                        "{}",
                        1_654_922_000_000u64 + fnv(key.as_bytes(), 3) % 1_000_000
                    ),
                    pci_domain: 0,
                    pci_bus: bus,
                    pci_device: 0,
                    bus_id: format!("00000000:{bus:02X}:00.0"),
                    bus_id_short: format!("0000:{bus:02X}:00.0"),
                    total_memory: total,
                }
            })
            .collect();
        let cuda_order = match std::env::var("GENV_SIM_CUDA_ORDER").ok().as_deref() {
            Some("reverse") => (0..n).rev().collect(),
            Some(list) if list.contains(',') || list.parse::<usize>().is_ok() => {
                let v: Vec<usize> = list
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .filter(|&x| x < n)
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() == n && v.len() == n {
                    v
                } else {
                    (0..n).collect()
                }
            }
            _ => (0..n).collect(),
        };
        let driver = driver_from_env();
        let cuda_version = std::env::var("GENV_SIM_CUDA_VERSION")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(driver.cuda_version);
        Machine {
            gpus,
            cuda_order,
            context_memory,
            driver,
            driver_version: driver.driver_version,
            cuda_version,
        }
    }

    /// The NVML index of the device with this UUID (with or without the `GPU-` prefix).
    pub fn by_uuid(&self, uuid: &str) -> Option<usize> {
        let u = uuid.trim();
        self.gpus.iter().position(|g| {
            g.uuid.eq_ignore_ascii_case(u)
                || g.uuid[4..].eq_ignore_ascii_case(u)
                || (u.len() >= 8
                    && g.uuid
                        .to_ascii_lowercase()
                        .starts_with(&u.to_ascii_lowercase()))
        })
    }

    /// The NVML index of the device at this PCI bus id (`0000:18:00.0`, `00000000:18:00.0`, `18:00.0`).
    pub fn by_bus_id(&self, bus_id: &str) -> Option<usize> {
        let want = normalize_bus_id(bus_id)?;
        self.gpus
            .iter()
            .position(|g| normalize_bus_id(&g.bus_id) == Some(want))
    }
}

/// (domain, bus, device, function) of a PCI bus id string.
pub fn normalize_bus_id(s: &str) -> Option<(u32, u32, u32, u32)> {
    let s = s.trim().trim_end_matches('\0');
    let parts: Vec<&str> = s.split(':').collect();
    let (dom, bus, rest) = match parts.len() {
        3 => (u32::from_str_radix(parts[0], 16).ok()?, parts[1], parts[2]),
        2 => (0, parts[0], parts[1]),
        _ => return None,
    };
    let bus = u32::from_str_radix(bus, 16).ok()?;
    let (dev, func) = rest.split_once('.').unwrap_or((rest, "0"));
    Some((
        dom,
        bus,
        u32::from_str_radix(dev, 16).ok()?,
        u32::from_str_radix(func, 16).ok()?,
    ))
}

/// The machine described by the environment of this process (read once).
pub fn machine() -> &'static Machine {
    static M: OnceLock<Machine> = OnceLock::new();
    M.get_or_init(Machine::from_env)
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
}

#[repr(C)]
struct Slot {
    pid: AtomicU32,
    /// Bit d: this process has a CUDA context on NVML device d.
    contexts: AtomicU32,
    used: [AtomicU64; MAX_GPUS],
}

const HEADER_SIZE: usize = 64;
const FILE_SIZE: usize = HEADER_SIZE + MAX_PROCS * std::mem::size_of::<Slot>();

/// Memory one process holds on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcUsage {
    pub pid: u32,
    /// Allocations plus the context, in bytes.
    pub used: u64,
}

/// Cross-process record of device memory held by each process.
pub struct Ledger {
    file: File,
    map: memmap2::MmapRaw,
    /// (pid that claimed it, slot): a forked child sees another pid and claims its own.
    mine: Mutex<Option<(u32, usize)>>,
}

fn lock_byte(fd: i32, cmd: i32, ty: i32, slot: usize) -> Option<libc::flock> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = LOCK_BASE + slot as i64;
    fl.l_len = 1;
    let r = unsafe { libc::fcntl(fd, cmd, &mut fl) };
    if r == 0 {
        Some(fl)
    } else {
        None
    }
}

struct FileLock<'a>(&'a File);
impl<'a> FileLock<'a> {
    fn new(f: &'a File) -> Self {
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        FileLock(f)
    }
}
impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The directory of the simulated machine's shared files.
pub fn sim_dir() -> std::path::PathBuf {
    std::env::var_os("GENV_SIM_DIR")
        .map(Into::into)
        .unwrap_or_else(|| "/tmp/genv-sim".into())
}

impl Ledger {
    fn open() -> std::io::Result<Ledger> {
        let dir = sim_dir();
        if std::fs::create_dir_all(&dir).is_ok() {
            // Shared by every user of the machine, like /tmp.
            let _ = std::fs::set_permissions(
                &dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o1777),
            );
        }
        let path = dir.join("ledger");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        {
            let _g = FileLock::new(&file);
            let len = file.metadata()?.len() as usize;
            if len < FILE_SIZE {
                file.set_len(FILE_SIZE as u64)?;
            }
            let _ = std::fs::set_permissions(
                &path,
                std::os::unix::fs::PermissionsExt::from_mode(0o666),
            );
        }
        let map = memmap2::MmapOptions::new().len(FILE_SIZE).map_raw(&file)?;
        let l = Ledger {
            file,
            map,
            mine: Mutex::new(None),
        };
        let h = l.header();
        if h.magic.load(Ordering::Acquire) != MAGIC {
            let _g = FileLock::new(&l.file);
            if h.magic.load(Ordering::Acquire) != MAGIC {
                for i in 0..MAX_PROCS {
                    let s = l.slot(i);
                    s.pid.store(0, Ordering::Relaxed);
                    s.contexts.store(0, Ordering::Relaxed);
                    for u in &s.used {
                        u.store(0, Ordering::Relaxed);
                    }
                }
                h.magic.store(MAGIC, Ordering::Release);
            }
        }
        Ok(l)
    }

    fn header(&self) -> &Header {
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < MAX_PROCS);
        unsafe { &*(self.map.as_ptr().add(HEADER_SIZE) as *const Slot).add(i) }
    }

    fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// This process's slot, claimed on first use (and again in a forked child).
    fn my_slot(&self) -> Option<usize> {
        let pid = std::process::id();
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, s)) = *mine {
            if p == pid {
                return Some(s);
            }
        }
        let _g = FileLock::new(&self.file);
        for i in 0..MAX_PROCS {
            // A slot whose byte we can lock is free or belonged to a dead process.
            if lock_byte(self.fd(), libc::F_SETLK, libc::F_WRLCK, i).is_some() {
                let s = self.slot(i);
                s.contexts.store(0, Ordering::Relaxed);
                for u in &s.used {
                    u.store(0, Ordering::Relaxed);
                }
                s.pid.store(pid, Ordering::Release);
                *mine = Some((pid, i));
                return Some(i);
            }
        }
        None
    }

    /// Whether the process in slot `i` is alive (holds its lock, or is us).
    fn alive(&self, i: usize) -> bool {
        let s = self.slot(i);
        let pid = s.pid.load(Ordering::Acquire);
        if pid == 0 {
            return false;
        }
        if let Some((p, m)) = *self.mine.lock().unwrap_or_else(|e| e.into_inner()) {
            if m == i && p == std::process::id() {
                return true;
            }
        }
        match lock_byte(self.fd(), libc::F_GETLK, libc::F_WRLCK, i) {
            Some(fl) => fl.l_type as i32 != libc::F_UNLCK,
            None => false,
        }
    }

    fn used_locked(&self, dev: usize) -> u64 {
        let m = machine();
        (0..MAX_PROCS)
            .filter(|&i| self.slot(i).pid.load(Ordering::Relaxed) != 0 && self.alive(i))
            .map(|i| {
                let s = self.slot(i);
                let ctx = if s.contexts.load(Ordering::Relaxed) & (1 << dev) != 0 {
                    m.context_memory
                } else {
                    0
                };
                s.used[dev].load(Ordering::Relaxed) + ctx
            })
            .sum()
    }

    /// Takes `bytes` on NVML device `dev` for this process if the device has them free.
    pub fn reserve(&self, dev: usize, bytes: u64) -> bool {
        let m = machine();
        let Some(gpu) = m.gpus.get(dev) else {
            return false;
        };
        let Some(slot) = self.my_slot() else {
            return false;
        };
        let _g = FileLock::new(&self.file);
        if self.used_locked(dev).saturating_add(bytes) > gpu.total_memory {
            return false;
        }
        self.slot(slot).used[dev].fetch_add(bytes, Ordering::AcqRel);
        true
    }

    /// Gives back `bytes` on device `dev` that this process reserved.
    pub fn release(&self, dev: usize, bytes: u64) {
        if dev >= MAX_GPUS {
            return;
        }
        if let Some(slot) = self.my_slot() {
            let u = &self.slot(slot).used[dev];
            let _ = u.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(bytes))
            });
        }
    }

    /// Records that this process has (or no longer has) a context on device `dev`.
    /// Returns false when the context's memory does not fit on the device.
    pub fn set_context(&self, dev: usize, present: bool) -> bool {
        if dev >= MAX_GPUS {
            return false;
        }
        let Some(slot) = self.my_slot() else {
            return false;
        };
        let s = self.slot(slot);
        let bit = 1u32 << dev;
        if present {
            let _g = FileLock::new(&self.file);
            if s.contexts.load(Ordering::Acquire) & bit == 0 {
                let m = machine();
                let total = m.gpus.get(dev).map(|g| g.total_memory).unwrap_or(0);
                if self.used_locked(dev).saturating_add(m.context_memory) > total {
                    return false;
                }
                s.contexts.fetch_or(bit, Ordering::AcqRel);
            }
        } else {
            s.contexts.fetch_and(!bit, Ordering::AcqRel);
        }
        true
    }

    /// Bytes held on device `dev` by all live processes (allocations and contexts).
    pub fn used(&self, dev: usize) -> u64 {
        if dev >= MAX_GPUS {
            return 0;
        }
        self.used_locked(dev)
    }

    /// Live processes with a context or memory on device `dev`, in slot order.
    pub fn processes(&self, dev: usize) -> Vec<ProcUsage> {
        if dev >= MAX_GPUS {
            return Vec::new();
        }
        let m = machine();
        (0..MAX_PROCS)
            .filter(|&i| self.slot(i).pid.load(Ordering::Relaxed) != 0 && self.alive(i))
            .filter_map(|i| {
                let s = self.slot(i);
                let has_ctx = s.contexts.load(Ordering::Relaxed) & (1 << dev) != 0;
                let used = s.used[dev].load(Ordering::Relaxed);
                if !has_ctx && used == 0 {
                    return None;
                }
                Some(ProcUsage {
                    pid: s.pid.load(Ordering::Relaxed),
                    used: used + if has_ctx { m.context_memory } else { 0 },
                })
            })
            .collect()
    }
}

/// The ledger of this machine, opened on first use; `None` when its file cannot be opened.
pub fn ledger() -> Option<&'static Ledger> {
    static L: OnceLock<Option<Ledger>> = OnceLock::new();
    L.get_or_init(|| Ledger::open().ok()).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("81559mi"), Some(81559 << 20));
        assert_eq!(parse_size("4g"), Some(4_000_000_000));
        assert_eq!(parse_size("44040192"), Some(44040192));
        assert_eq!(parse_size("4x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn shape() {
        let m = machine();
        assert_eq!(m.gpus.len(), 4);
        assert_eq!(m.gpus[1].bus_id, "00000000:28:00.0");
        assert_eq!(m.by_bus_id("0000:28:00.0"), Some(1));
        assert_eq!(m.by_uuid(&m.gpus[2].uuid), Some(2));
        assert_ne!(m.gpus[0].uuid, m.gpus[1].uuid);
    }
}
