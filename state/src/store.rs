//! Opening, validating, reading and writing the state file.

use crate::fsafe::{Dir, OpenError};
use crate::layout::*;
use crate::mode::Mode;
use crate::Error;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

/// The directory of the state file in the mode in force (see mode.rs): `$GENV_TMPDIR` (default
/// `/var/tmp/genv`) in the shared mode, the configured one in system mode.
pub fn state_dir() -> PathBuf {
    match Mode::current() {
        Ok(m) => m.state_dir().to_path_buf(),
        Err(_) => Mode::shared().state_dir().to_path_buf(),
    }
}

/// The state file's path inside [`state_dir`].
pub fn state_path() -> PathBuf {
    state_dir().join(STATE_FILE)
}

/// An open, mapped and validated state file.
pub struct Store {
    path: PathBuf,
    /// The directory it was found in (checked, held open) and its name there.
    dir: Dir,
    name: String,
    file: File,
    map: memmap2::MmapRaw,
    /// False when the file could only be opened for reading: readers work, writers refuse.
    writable: bool,
    /// Device and inode of the file as opened (a removed or replaced file is told by these).
    id: (u64, u64),
    /// Processes that still use an earlier state file of this directory (found at open by the
    /// CLI and the SDK): while there are any, transactions refuse (see `open_at`).
    stale_users: usize,
    /// The service's store (system mode): writers are its own threads, serialised by this lock
    /// rather than by `flock` on a file every user can open (and so hold locked).
    service: Option<std::sync::Mutex<()>>,
}

/// A heap copy of the tables (they are megabytes: never on the stack).
pub struct Snapshot {
    tables: Box<Tables>,
    pub generation: u64,
}

impl std::ops::Deref for Snapshot {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

pub(crate) fn zeroed_tables() -> Box<Tables> {
    let layout = std::alloc::Layout::new::<Tables>();
    // SAFETY: Tables is plain data for which all-zero bytes are a valid value; the pointer is
    // checked for null and has Tables' layout, so Box may own it.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut Tables;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(p)
    }
}

struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn exclusive(f: &'a File) -> std::io::Result<Self> {
        loop {
            match rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(FlockGuard(f)),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::State(format!("cannot {what} {}: {e}", path.display()))
}

/// An open-file-description record lock on one byte at `offset` (`F_OFD_SETLK`/`F_OFD_GETLK`
/// with `ty` `F_RDLCK`/`F_WRLCK`/`F_UNLCK`); `None` when refused. OFD locks belong to the open
/// file description: closing another descriptor of the same file (the SDK and the shim may
/// share a process) does not drop them, unlike classic POSIX locks, and the kernel drops them
/// when the last descriptor goes, however the process ends.
pub(crate) fn ofd_lock(f: &File, cmd: i32, ty: i32, offset: i64) -> Option<libc::flock> {
    // SAFETY: all-zero is a valid `flock`; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = offset;
    fl.l_len = 1;
    // SAFETY: a valid descriptor and a valid flock for the F_OFD_* commands.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl) };
    (r == 0).then_some(fl)
}

/// The byte at which users of the state file in directory `dir` hold their read lock: a
/// function of the directory's identity, so that files of other directories on the same file
/// system (several `GENV_TMPDIR`s) are not taken for earlier files of this one.
fn user_lock_offset(dir: &Dir) -> i64 {
    // splitmix64: stable across builds and Rust versions, unlike std's hasher.
    let mut z = dir.dev ^ dir.ino.rotate_left(32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    USER_LOCK_BASE + (z % USER_LOCK_SPAN) as i64
}

/// The inodes of the files on which processes hold the users' lock of `dir`, one entry per
/// holder (from /proc/locks, which every user may read; OFD locks show no pid there).
fn lock_holders(dir: &Dir) -> Vec<u64> {
    let want = user_lock_offset(dir) as u64;
    let (maj, min) = (libc::major(dir.dev) as u64, libc::minor(dir.dev) as u64);
    crate::procfs::locks()
        .into_iter()
        .filter(|l| !l.posix && l.major == maj && l.minor == min && l.start == want)
        .map(|l| l.ino)
        .collect()
}

/// The shared mode's state file: every user writes it (see ARCHITECTURE.md, "Hostile files").
const SHARED_FILE_MODE: u32 = 0o666;
/// System mode's: root (the service) writes, everyone reads.
const SERVICE_FILE_MODE: u32 = 0o644;

fn processes(n: usize) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{n} processes")
    }
}

/// The bytes of a plain-data value (a file header).
pub(crate) fn plain_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: any initialised value's bytes may be read; the callers' types are plain data
    // without padding that matters (headers written to a file as they are laid out).
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Makes file `name` in `dir` as a whole: a temporary file beside it (`O_EXCL`, `mode`, given to
/// `owner` when set), fully allocated to `size` (no SIGBUS later from a full disk), `header`
/// written at its start, then linked into place, so that no process ever sees a half-made
/// file. If another process links its file first, theirs stands (and is checked like any other).
pub(crate) fn create_whole(
    dir: &Dir,
    name: &str,
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    size: usize,
    header: &[u8],
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    let tmp = format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        crate::fsafe::random_u64()
    );
    let tmp_path = dir.path().join(&tmp);
    let f = dir
        .create_new(&tmp, mode)
        .map_err(|e| io_err(&tmp_path, "create", e))?;
    let result = (|| -> std::io::Result<()> {
        if let Some((u, g)) = owner {
            rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
            )
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
        }
        allocate(&f, size as u64)?;
        f.write_all_at(header, 0)?;
        match dir.link(&tmp, name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    })();
    let _ = dir.unlink(std::ffi::OsStr::new(&tmp));
    result.map_err(|e| create_error(path, dir.path(), size, e))
}

/// The error of making a file of `size` bytes at `path`: a full disk or quota says what it needs.
pub(crate) fn create_error(path: &Path, dir: &Path, size: usize, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        Error::State(format!(
            "cannot create {}: {e} (it needs {} MiB); free space in {} or point GENV_TMPDIR \
             elsewhere",
            path.display(),
            size.div_ceil(1 << 20),
            dir.display()
        ))
    } else {
        io_err(path, "create", e)
    }
}

/// Fills a fresh file with real blocks, so that a full disk is an error now rather than a
/// SIGBUS in whichever process first touches a page of a sparse file.
pub(crate) fn allocate(f: &File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
            // A file system without fallocate: write the zeros.
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(zeros.len() as u64) as usize;
                f.write_all_at(&zeros[..n], off)?;
                off += n as u64;
            }
            Ok(())
        }
        Err(e) => Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
    }
}

impl Store {
    /// Opens the state file of this machine, creating it (and its directory) when missing.
    pub fn open() -> Result<Store, Error> {
        Self::open_at(&state_path(), true)
    }

    /// Opens the state file at `path`; creates it when `create` and it does not exist. Every
    /// directory on the way is checked and nothing but a regular file is opened (fsafe.rs). A
    /// file that cannot be opened for writing is opened read-only: readers work, writers get
    /// one line. With `create` (the CLI, the SDK), a removed or replaced file that processes
    /// still use is noticed: no new file is made, and transactions refuse (see
    /// `stale_users`), so that nothing hands out GPUs those processes hold.
    pub fn open_at(path: &Path, create: bool) -> Result<Store, Error> {
        Self::open_with(path, create, false)
    }

    /// The service's store (system mode, root): the directory must exist (`genv admin install`
    /// made it, root's), a missing file is made readable by all and writable by root only, and
    /// writers are serialised inside the service. Nobody but root can remove or replace the
    /// file there, so the removal checks of the shared mode (which any user could trip) are
    /// not made.
    pub fn open_service(path: &Path) -> Result<Store, Error> {
        Self::open_with(path, true, true)
    }

    fn open_with(path: &Path, create: bool, service: bool) -> Result<Store, Error> {
        let dir_path = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::State(format!("{} does not name a state file", path.display())))?
            .to_string();
        let dir = Dir::open(dir_path, create && !service)?;
        let way_out = format!(
            "remove it (rm {}) to start afresh; this forgets every environment on this machine",
            path.display()
        );
        let mut created = false;
        let (file, writable) = loop {
            let e = match dir.open_file(&name, true) {
                Ok(f) => break (f, true),
                Err(OpenError::Denied(_)) => match dir.open_file(&name, false) {
                    Ok(f) => break (f, false),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match e {
                OpenError::Missing if service && !created => {
                    Self::create(&dir, &name, path, SERVICE_FILE_MODE)?;
                    created = true;
                }
                OpenError::Missing if create && !created => {
                    let holders = lock_holders(&dir);
                    if !holders.is_empty() && dir.entry_id(&name).is_none() {
                        return Err(Error::State(format!(
                            "state file {} was removed while {} still use it: genv will not \
                             start a new one, which would hand out the GPUs they hold; let them \
                             end (they keep working; `lsof +L1` lists them), then retry",
                            path.display(),
                            processes(holders.len())
                        )));
                    }
                    if dir.entry_id(&name).is_none() {
                        Self::create(&dir, &name, path, SHARED_FILE_MODE)?;
                    }
                    created = true;
                }
                OpenError::Missing => {
                    return Err(Error::State(format!(
                        "state file {} does not exist; run `genv activate` to create it",
                        path.display()
                    )))
                }
                OpenError::NotRegular(what) => {
                    return Err(Error::State(format!(
                        "{} is {what}, not a genv state file, and genv does not open it; {way_out}",
                        path.display()
                    )))
                }
                OpenError::Denied(e) | OpenError::Io(e) => return Err(io_err(path, "open", e)),
            }
        };
        let len = file.metadata().map_err(|e| io_err(path, "read", e))?.len() as usize;
        if len < HEADER_SIZE {
            return Err(Error::State(format!(
                "state file {} is truncated ({len} bytes); {way_out}",
                path.display()
            )));
        }
        let mut opts = memmap2::MmapOptions::new();
        opts.len(len);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| io_err(path, "map", e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes; Header is plain data.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        if h.magic != MAGIC {
            return Err(Error::State(format!(
                "{} is not a genv state file; {way_out}",
                path.display()
            )));
        }
        if h.version != VERSION {
            let who = if h.version < VERSION {
                "an older"
            } else {
                "a newer"
            };
            return Err(Error::State(format!(
                "state file {} was written by {who} genv (format {}, this genv reads format {VERSION}); \
                 deactivate its environments with that genv, or {way_out}",
                path.display(),
                h.version
            )));
        }
        if h.file_size as usize != FILE_SIZE
            || len < FILE_SIZE
            || h.tables_size as usize != TABLES_SIZE
            || h.ledger_size != 0
            || h.max_envs as usize != MAX_ENVS
            || h.max_devices as usize != MAX_DEVICES
            || h.max_procs as usize != MAX_PROCS
            || h.max_pids as usize != MAX_PIDS
        {
            return Err(Error::State(format!(
                "state file {} is truncated or has an unexpected layout ({len} bytes, expected {FILE_SIZE}); {way_out}",
                path.display()
            )));
        }
        let st = rustix::fs::fstat(&file).map_err(|e| {
            io_err(
                path,
                "read",
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )
        })?;
        let id = (st.st_dev, st.st_ino);
        // Say "I use this file" where every user can see it (see `lock_holders`).
        let _ = ofd_lock(
            &file,
            libc::F_OFD_SETLK,
            libc::F_RDLCK,
            user_lock_offset(&dir),
        );
        let stale_users = if create && !service {
            lock_holders(&dir)
                .iter()
                .filter(|&&ino| ino != id.1)
                .count()
        } else {
            0
        };
        Ok(Store {
            path: path.to_path_buf(),
            dir,
            name,
            file,
            map,
            writable,
            id,
            stale_users,
            service: service.then(|| std::sync::Mutex::new(())),
        })
    }

    /// Makes a fresh state file (see [`create_whole`]): readable and writable by every user in
    /// the shared mode, by root alone in the service's (see ARCHITECTURE.md).
    fn create(dir: &Dir, name: &str, path: &Path, mode: u32) -> Result<(), Error> {
        // SAFETY: Header is plain data (integers and atomics) for which zero is valid.
        let mut h: Header = unsafe { std::mem::zeroed() };
        h.magic = MAGIC;
        h.version = VERSION;
        h.header_size = HEADER_SIZE as u32;
        h.file_size = FILE_SIZE as u64;
        h.max_devices = MAX_DEVICES as u32;
        h.max_envs = MAX_ENVS as u32;
        h.max_pids = MAX_PIDS as u32;
        h.max_procs = MAX_PROCS as u32;
        h.tables_size = TABLES_SIZE as u64;
        h.ledger_size = 0;
        h.instance = crate::fsafe::random_u64() | 1;
        create_whole(dir, name, path, mode, None, FILE_SIZE, plain_bytes(&h))
    }

    /// Whether the file at the path is not this one any more (removed, or replaced by another).
    /// One `fstatat`: for cold paths (the shim's initialisation points, the CLI).
    pub fn replaced(&self) -> bool {
        self.dir.entry_id(&self.name) != Some(self.id)
    }

    /// The random instance id of this file (0 for files made before there was one).
    pub fn instance(&self) -> u64 {
        self.header().instance
    }

    /// Whether this process may write the file (it was opened read-write).
    pub fn writable(&self) -> bool {
        self.writable
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: validated in open_at.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn tables_ptr(&self, which: usize) -> *mut Tables {
        // SAFETY: offsets lie inside the validated mapping.
        unsafe { self.map.as_mut_ptr().add(TABLES_OFFSET[which & 1]) as *mut Tables }
    }

    /// The state directory (checked, held open).
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The directory of the per-user ledgers, made when `create` is `Some(mode)` (1777 in the
    /// shared mode; the service makes its own, root's 0755).
    pub fn ledger_dir(&self, create: Option<u32>) -> Result<Dir, Error> {
        self.dir.subdir(LEDGER_DIR, create)
    }

    /// `uid`'s ledger, opened for `access`, made when missing as `create` says.
    pub fn ledger(
        &self,
        uid: u32,
        access: crate::ledger::Access,
        create: crate::ledger::Create,
    ) -> Result<crate::ledger::LedgerFile, Error> {
        let shared =
            (create == crate::ledger::Create::Own).then_some(crate::fsafe::SHARED_DIR_MODE);
        let dir = self.ledger_dir(shared)?;
        crate::ledger::LedgerFile::open(&dir, uid, access, create)
    }

    /// Refuses, with the reason, when this process must not write the file: it is read-only for
    /// it, or processes still use an earlier file of this directory.
    pub fn check_writable(&self) -> Result<(), Error> {
        if !self.writable {
            let who = self
                .file
                .metadata()
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!(
                        " (it belongs to {}({}) with mode {:04o})",
                        crate::procfs::user_name(m.uid()),
                        m.uid(),
                        m.mode() & 0o7777
                    )
                })
                .unwrap_or_default();
            return Err(Error::State(format!(
                "state file {} is read-only for you{who}: genv can show it but not change it",
                self.path.display()
            )));
        }
        if self.stale_users > 0 {
            return Err(Error::State(format!(
                "state file {} was replaced while {} still use the previous one: genv will not \
                 change this one, which does not know the GPUs they hold; let them end (they keep \
                 working; `lsof +L1` lists them), then retry",
                self.path.display(),
                processes(self.stale_users)
            )));
        }
        Ok(())
    }

    /// The write generation: changes whenever the tables change. One atomic load.
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }

    /// A consistent copy of the current tables, without taking any lock.
    pub fn snapshot(&self) -> Snapshot {
        let mut out = zeroed_tables();
        let generation = self.snapshot_into(&mut out);
        Snapshot {
            tables: out,
            generation,
        }
    }

    /// Copies the active tables into `out`, which must be all zero (a seqlock read: retried
    /// while a writer overtakes us). Only the used prefix is copied, and `out`'s zero tail is
    /// left as it is: touching all of it would fault in megabytes of pages, the largest cost of
    /// a program's first CUDA call under the shim.
    fn snapshot_into(&self, out: &mut Tables) -> u64 {
        let h = self.header();
        // Bytes of `out` that an earlier, abandoned attempt wrote.
        let mut dirty = 0usize;
        loop {
            let g1 = h.generation.load(Ordering::SeqCst);
            let which = h.active.load(Ordering::SeqCst) as usize;
            let src = self.tables_ptr(which);
            // SAFETY: src points at a Tables in the mapping; we copy raw bytes and only trust
            // them if no writer could have started on this copy meanwhile (checked below). The
            // lengths are bounded by the clamped high-water mark, within both Tables.
            let ok = unsafe {
                let hwm = std::ptr::read_volatile(std::ptr::addr_of!((*src).env_hwm)) as usize;
                let len = tables_prefix_len(hwm.min(MAX_ENVS));
                let dst = out as *mut Tables as *mut u8;
                std::ptr::copy_nonoverlapping(src as *const u8, dst, len);
                if dirty > len {
                    std::ptr::write_bytes(dst.add(len), 0, dirty - len);
                }
                dirty = dirty.max(len);
                fence(Ordering::SeqCst);
                let g2 = h.generation.load(Ordering::SeqCst);
                // A writer bumps the generation once when it starts and once after its flip; our
                // copy can only have been overwritten after a flip *and* a later start.
                g2.wrapping_sub(g1) <= 1
            };
            if ok {
                out.sanitize();
                return g1;
            }
            std::hint::spin_loop();
        }
    }

    /// Runs `f` on a private copy of the tables under the writers' lock and makes the result
    /// current only when `f` returns `Ok`: an error leaves the state exactly as it was.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Tables) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_writable()?;
        let (_flock, _inner);
        match &self.service {
            Some(m) => _inner = Some(m.lock().unwrap_or_else(|e| e.into_inner())),
            None => {
                _flock = Some(
                    FlockGuard::exclusive(&self.file).map_err(|e| io_err(&self.path, "lock", e))?,
                )
            }
        }
        // A file shrunk since it was opened would fault on the first write past its end.
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < FILE_SIZE as u64 {
            return Err(Error::State(format!(
                "state file {} was truncated ({len} bytes) while in use; remove it (rm {}) to start afresh",
                self.path.display(),
                self.path.display()
            )));
        }
        let h = self.header();
        let cur = h.active.load(Ordering::SeqCst) as usize & 1;
        let next = cur ^ 1;
        // `f` works on a private copy: nothing written into the shared file meanwhile (a
        // hostile edit) can change what it sees half-way, and whatever a flipped byte left in
        // the file is brought back within bounds first.
        let mut work = zeroed_tables();
        // SAFETY: the active copy lies inside the validated mapping and holds plain data; the
        // copy is bounded by the (clamped) high-water mark and `work` is a whole Tables.
        unsafe {
            let src = self.tables_ptr(cur);
            let hwm = (std::ptr::read_volatile(std::ptr::addr_of!((*src).env_hwm)) as usize)
                .min(MAX_ENVS);
            std::ptr::copy_nonoverlapping(
                src as *const u8,
                &mut *work as *mut Tables as *mut u8,
                tables_prefix_len(hwm),
            );
        }
        work.sanitize();
        let v = f(&mut work)?;
        // Keep the hwm tight so readers copy little.
        let mut hwm = (work.env_hwm as usize).min(MAX_ENVS);
        while hwm > 0 && !work.envs[hwm - 1].is_used() {
            hwm -= 1;
        }
        work.env_hwm = hwm as u32;
        // The seqlock: readers retry if the generation moved by two or more while they copied.
        h.generation.fetch_add(1, Ordering::SeqCst);
        // SAFETY: only the flock holder writes the inactive copy, which lies inside the mapping;
        // readers only read below the hwm, which this copies whole.
        unsafe {
            std::ptr::copy_nonoverlapping(
                &*work as *const Tables as *const u8,
                self.tables_ptr(next) as *mut u8,
                tables_prefix_len(hwm),
            );
        }
        fence(Ordering::SeqCst);
        h.active.store(next as u32, Ordering::SeqCst);
        h.generation.fetch_add(1, Ordering::SeqCst);
        Ok(v)
    }
}
