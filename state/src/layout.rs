//! The fixed layout of the state file. Every record is `#[repr(C)]` plain data so that the CLI,
//! the SDK and the shim (in any process, any user) read the same bytes; nothing is serialised.
//!
//! ```text
//! state.v2:      [Header 4 KiB][Tables A][Tables B]
//! ledger/<uid>:  [LedgerHeader 4 KiB][Ledger]        one per user
//! ```
//! The two `Tables` copies make writes crash-safe: a writer (holding `flock`) copies the active
//! copy into the other, changes it and then flips `Header::active`. A writer that dies before the
//! flip leaves the active copy untouched. Readers never lock: they copy the active tables and
//! retry if `Header::generation` moved by two or more meanwhile (a seqlock).
//! Each user's `Ledger` (the memory their environments' processes hold) is a file of its own,
//! owned by that user and updated in place with atomics by the shim (see `ledger.rs`): a user's
//! processes write only their own user's accounting.

use std::sync::atomic::{AtomicU32, AtomicU64};

pub const MAGIC: [u8; 8] = *b"GENVSTAT";
/// Bump on any change of layout: older files are refused with a clear message.
pub const VERSION: u32 = 2;
/// The state file's name in its directory (the format version is in the name, so that genv of
/// an older format and this one never open each other's file).
pub const STATE_FILE: &str = "state.v2";
/// The directory of the per-user ledgers, inside the state directory.
pub const LEDGER_DIR: &str = "ledger";
pub const LEDGER_MAGIC: [u8; 8] = *b"GENVLEDG";
pub const LEDGER_VERSION: u32 = 1;
pub const MAX_DEVICES: usize = 32;
pub const MAX_ENVS: usize = 2048;
pub const MAX_PIDS: usize = 16;
/// Process slots of one user's ledger: processes of that user under the shim at once.
pub const MAX_PROCS: usize = 4096;
pub const HEADER_SIZE: usize = 4096;

/// Offset of the byte-range locks that mark live processes (one byte per process slot of a
/// ledger file); they lie past the end of the file, which POSIX allows.
pub const PROC_LOCK_BASE: i64 = 1 << 40;

/// Offset of the byte-range read lock that every process with the state file open holds at
/// `USER_LOCK_BASE + tag(its directory)`: visible in /proc/locks with the file's inode, it tells
/// the CLI that processes still use a state file that was removed or replaced (see store.rs).
pub const USER_LOCK_BASE: i64 = 1 << 41;
/// The tags spread over this many bytes past [`USER_LOCK_BASE`].
pub const USER_LOCK_SPAN: u64 = 1 << 40;

#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub header_size: u32,
    pub file_size: u64,
    pub max_devices: u32,
    pub max_envs: u32,
    pub max_pids: u32,
    pub max_procs: u32,
    pub tables_size: u64,
    /// 0: the ledgers are files of their own (kept so that the layout check reads as before).
    pub ledger_size: u64,
    /// Incremented by a writer when it starts writing the inactive copy and again after the flip.
    pub generation: AtomicU64,
    /// Which `Tables` copy is current (0 or 1).
    pub active: AtomicU32,
    pub _pad: u32,
    /// Random, chosen when the file is made: tells a file from the one it replaced (0 in files
    /// made before it existed).
    pub instance: u64,
}

/// A GPU as NVML reported it when the device list was last read.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DeviceRec {
    /// Non-zero when this slot holds a device.
    pub present: u32,
    /// NVML index (host numbering).
    pub index: u32,
    pub total_memory: u64,
    pub uuid: [u8; 64],
    pub name: [u8; 96],
}

/// A process that activated the environment (a shell, `genv exec`, an SDK user).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PidRec {
    pub pid: u32,
    pub _pad: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22): tells a reused pid apart.
    pub start_time: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct AttachRec {
    /// NVML index of the device.
    pub device: u32,
    /// Non-zero when attached with `--over-subscribe` (the device may be shared).
    pub shared: u32,
    /// Unix time in milliseconds.
    pub time_ms: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvRec {
    /// Unique for every environment ever created in this file; 0 marks a free slot.
    pub serial: u64,
    pub eid: [u8; 64],
    pub uid: u32,
    pub n_pids: u32,
    pub username: [u8; 32],
    pub name: [u8; 64],
    pub created_ms: u64,
    /// Configured device count; negative when not configured.
    pub cfg_gpus: i32,
    pub n_attached: u32,
    /// Configured capacity in bytes per device; meaningful when `cfg_mem_text` is non-empty.
    pub cfg_mem_bytes: u64,
    /// The capacity as the user wrote it (`4g`), shown back by `status` and `config`.
    pub cfg_mem_text: [u8; 32],
    pub pids: [PidRec; MAX_PIDS],
    /// In attach order: the shim numbers CUDA devices in this order.
    pub attached: [AttachRec; MAX_DEVICES],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tables {
    pub next_serial: u64,
    /// When the device list was last read from NVML (unix ms); 0 = never.
    pub devices_read_ms: u64,
    pub n_devices: u32,
    /// One past the highest used env slot: readers copy only this far.
    pub env_hwm: u32,
    pub devices: [DeviceRec; MAX_DEVICES],
    pub envs: [EnvRec; MAX_ENVS],
}

/// Memory the processes of one environment hold, per device (NVML index). Slot i belongs to
/// `Tables::envs[i]` while `serial` matches that environment's serial.
#[repr(C)]
pub struct EnvUsage {
    pub serial: AtomicU64,
    pub used: [AtomicU64; MAX_DEVICES],
}

/// The processes of one user that run under the shim, in dense arrays (a scan for live slots
/// reads only the pids and serials). Slot `i` is owned while its byte at `PROC_LOCK_BASE + i`
/// of the ledger file is locked (OFD lock); the kernel drops the lock when the process dies.
#[repr(C)]
pub struct Procs {
    /// 0 when free.
    pub pid: [AtomicU32; MAX_PROCS],
    /// The process's environment: its table slot and serial.
    pub env_slot: [AtomicU32; MAX_PROCS],
    pub env_serial: [AtomicU64; MAX_PROCS],
    /// Bytes each process holds per device, already added to its environment's `EnvUsage`.
    pub used: [[AtomicU64; MAX_DEVICES]; MAX_PROCS],
}

/// One user's ledger. `envs[i]` belongs to `Tables::envs[i]` while `serial` matches that
/// environment's serial (only the entries of the user's own environments are ever used).
#[repr(C)]
pub struct Ledger {
    pub envs: [EnvUsage; MAX_ENVS],
    pub procs: Procs,
}

/// The head of a ledger file.
#[repr(C)]
pub struct LedgerHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// The user whose ledger it is.
    pub uid: u32,
    pub file_size: u64,
    pub max_envs: u32,
    pub max_procs: u32,
    pub max_devices: u32,
    pub _pad: u32,
}

/// The sections of the file start on page boundaries.
const PAGE: usize = 4096;
pub const TABLES_SIZE: usize = std::mem::size_of::<Tables>().next_multiple_of(PAGE);
pub const TABLES_OFFSET: [usize; 2] = [HEADER_SIZE, HEADER_SIZE + TABLES_SIZE];
pub const FILE_SIZE: usize = HEADER_SIZE + 2 * TABLES_SIZE;
/// A ledger file: its header page, then the `Ledger`.
pub const LEDGER_HEADER_SIZE: usize = PAGE;
pub const LEDGER_SIZE: usize = std::mem::size_of::<Ledger>().next_multiple_of(PAGE);
pub const LEDGER_FILE_SIZE: usize = LEDGER_HEADER_SIZE + LEDGER_SIZE;

/// Byte offset of `envs[i]` inside `Tables`, used to copy only the used prefix.
pub const fn tables_prefix_len(env_hwm: usize) -> usize {
    std::mem::offset_of!(Tables, envs) + env_hwm * std::mem::size_of::<EnvRec>()
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<LedgerHeader>() <= LEDGER_HEADER_SIZE);
// `Tables::sanitize` keeps a set of device indices in a u64.
const _: () = assert!(MAX_DEVICES <= 64);

/// The longest text a NUL-padded field of `EnvRec` holds: its size less the NUL end. Taking the
/// field itself (`text_capacity(|e| &e.name)`) keeps each limit in step with the layout.
const fn text_capacity<const N: usize>(_field: fn(&EnvRec) -> &[u8; N]) -> usize {
    N - 1
}

/// The longest environment identifier, in bytes.
pub const EID_MAX: usize = text_capacity(|e| &e.eid);
/// The longest environment name, in bytes.
pub const NAME_MAX: usize = text_capacity(|e| &e.name);
/// The longest GPU memory text (`4g` as the user wrote it), in bytes.
pub const GPU_MEMORY_MAX: usize = text_capacity(|e| &e.cfg_mem_text);

/// Now, as every time field of the file holds it: Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Copies a string into a fixed NUL-padded field, truncated on a char boundary. What users give
/// is checked against the limits above first (input.rs), so only text from the system (a long
/// user name, a GPU name) can ever be cut here.
pub fn put_str(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Reads a NUL-padded field.
pub fn get_str(src: &[u8]) -> String {
    let n = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..n]).into_owned()
}

impl EnvRec {
    /// A free slot's record.
    pub fn empty() -> EnvRec {
        // SAFETY: EnvRec is plain data (integers and byte arrays) for which all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
    pub fn eid(&self) -> String {
        get_str(&self.eid)
    }
    pub fn name(&self) -> String {
        get_str(&self.name)
    }
    pub fn username(&self) -> String {
        get_str(&self.username)
    }
    pub fn is_used(&self) -> bool {
        self.serial != 0
    }
    pub fn pids(&self) -> &[PidRec] {
        &self.pids[..(self.n_pids as usize).min(MAX_PIDS)]
    }
    pub fn attached(&self) -> &[AttachRec] {
        &self.attached[..(self.n_attached as usize).min(MAX_DEVICES)]
    }
    /// Keeps the activating processes for which `keep` holds, in order.
    pub fn retain_pids(&mut self, mut keep: impl FnMut(&PidRec) -> bool) {
        let mut n = 0;
        for i in 0..(self.n_pids as usize).min(MAX_PIDS) {
            if keep(&self.pids[i]) {
                self.pids[n] = self.pids[i];
                n += 1;
            }
        }
        self.n_pids = n as u32;
    }

    /// Keeps the attachments for which `keep` holds, in attach order.
    pub fn retain_attached(&mut self, mut keep: impl FnMut(&AttachRec) -> bool) {
        let mut n = 0;
        for i in 0..(self.n_attached as usize).min(MAX_DEVICES) {
            if keep(&self.attached[i]) {
                self.attached[n] = self.attached[i];
                n += 1;
            }
        }
        self.n_attached = n as u32;
    }

    pub fn gpu_memory(&self) -> Option<u64> {
        (self.cfg_mem_text[0] != 0).then_some(self.cfg_mem_bytes)
    }
    /// What the environment may hold on device `d`: its capacity, at most the device's memory
    /// (the whole device without a capacity). The one rule for placement and the shim's view.
    pub fn capacity_on(&self, d: &DeviceRec) -> u64 {
        self.gpu_memory()
            .map_or(d.total_memory, |c| c.min(d.total_memory))
    }
    pub fn gpus(&self) -> Option<u32> {
        (self.cfg_gpus >= 0).then_some(self.cfg_gpus as u32)
    }
}

impl DeviceRec {
    pub fn uuid(&self) -> String {
        get_str(&self.uuid)
    }
    pub fn name(&self) -> String {
        get_str(&self.name)
    }
}

impl Tables {
    /// Brings every count and index back within bounds, so that no reader indexes past an
    /// array whatever bytes the file holds (a flipped bit, a hostile edit): counts are clamped,
    /// attachments to devices that do not exist and repeated ones are dropped. Only the used
    /// prefix (below the high-water mark) is visited.
    pub fn sanitize(&mut self) {
        self.n_devices = self.n_devices.min(MAX_DEVICES as u32);
        self.env_hwm = self.env_hwm.min(MAX_ENVS as u32);
        let n_devices = self.n_devices;
        for e in self.envs[..self.env_hwm as usize]
            .iter_mut()
            .filter(|e| e.is_used())
        {
            e.n_pids = e.n_pids.min(MAX_PIDS as u32);
            e.n_attached = e.n_attached.min(MAX_DEVICES as u32);
            let mut seen = 0u64;
            e.retain_attached(|a| {
                let fresh = a.device < n_devices && seen & (1 << a.device) == 0;
                if fresh {
                    seen |= 1 << a.device;
                }
                fresh
            });
        }
    }

    pub fn devices(&self) -> &[DeviceRec] {
        &self.devices[..(self.n_devices as usize).min(MAX_DEVICES)]
    }
    pub fn envs(&self) -> impl Iterator<Item = (usize, &EnvRec)> {
        self.envs[..(self.env_hwm as usize).min(MAX_ENVS)]
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_used())
    }
    /// Any environment of identifier `eid` (identifiers are per user: several users may have
    /// one each; see [`Tables::env_for`]).
    pub fn env_by_eid(&self, eid: &str) -> Option<(usize, &EnvRec)> {
        self.envs().find(|(_, e)| e.eid() == eid)
    }

    /// Environment `eid` as user `uid` names it. Identifiers are per user, so that nobody can
    /// take another user's future identifier (a shell's pid, `exec-<pid>`) or reach another
    /// user's environment by its name: the user's own; for root (who may act on anyone's),
    /// else the one environment of that identifier, if there is exactly one.
    pub fn env_for(&self, uid: u32, eid: &str) -> Option<(usize, &EnvRec)> {
        if let Some(found) = self.envs().find(|(_, e)| e.uid == uid && e.eid() == eid) {
            return Some(found);
        }
        if uid != 0 {
            return None;
        }
        let mut them = self.envs().filter(|(_, e)| e.eid() == eid);
        match (them.next(), them.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// An environment `eid` of a user other than `uid` (to say whose it is when `uid` has none).
    pub fn foreign_env(&self, uid: u32, eid: &str) -> Option<(usize, &EnvRec)> {
        self.envs().find(|(_, e)| e.uid != uid && e.eid() == eid)
    }
}
