//! The driver's process-wide state: initialisation, visible devices, contexts, and every object
//! that holds device memory. One mutex guards it all; copies run outside it.

use genv_abi::cuda::*;
use genv_sim_common::{ledger, machine, MAX_GPUS};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

pub type R = Result<(), CUresult>;

/// What a piece of memory is, for accounting and `cuPointerGetAttribute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Device,
    Managed,
    /// Page-locked host memory (`cuMemAllocHost`, `cuMemHostAlloc`): not in the ledger.
    Host,
    /// From a memory pool (`cuMemAllocAsync`, `cuMemAllocFromPoolAsync`); the pool's handle.
    Pool(usize),
}

/// One linear allocation, keyed by its address.
#[derive(Debug)]
pub struct Alloc {
    /// Bytes asked for (what the ledger holds, unless host memory).
    pub size: u64,
    /// Bytes mapped (page-rounded).
    pub map_len: usize,
    pub nvml: usize,
    /// The owning context: destroying it frees the allocation. 0 for pool memory.
    pub ctx: usize,
    pub kind: Kind,
    pub host_flags: u32,
}

#[derive(Debug)]
pub struct Ctx {
    pub ord: usize,
    pub nvml: usize,
    pub flags: u32,
    pub primary: bool,
    /// Primary contexts exist from the first retain on, and are active while retained.
    pub active: bool,
    pub id: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Dev {
    /// Handle of the primary context (0 until first retained).
    pub primary: usize,
    pub primary_refs: u32,
    pub primary_flags: u32,
    pub default_pool: usize,
    pub current_pool: usize,
}

#[derive(Debug)]
pub struct Pool {
    pub ord: usize,
    pub nvml: usize,
    pub used: u64,
    pub high: u64,
    pub release_threshold: u64,
}

/// A CUDA array or mipmapped array: memory without an address.
#[derive(Debug)]
pub struct ArrayObj {
    pub ctx: usize,
    pub nvml: usize,
    pub bytes: u64,
    pub desc: CudaArray3dDescriptor,
    pub mipmapped: bool,
}

/// A physical allocation from `cuMemCreate`: a memfd that mappings share.
#[derive(Debug)]
pub struct Phys {
    pub fd: i32,
    pub size: u64,
    pub nvml: usize,
    pub prop: CUmemAllocationProp,
    /// The handle itself plus one per mapping; the memory goes when it reaches 0.
    pub refs: u32,
}

// The only pointer in `prop` is the Windows-only handle metadata, kept but never dereferenced.
unsafe impl Send for Phys {}

/// A mapping of (part of) a physical allocation into a reserved range.
#[derive(Debug)]
pub struct Mapping {
    pub size: u64,
    pub handle: u64,
    pub access: u32,
}

#[derive(Debug)]
pub struct Stream {
    pub ctx: usize,
    pub flags: u32,
    pub priority: i32,
}

pub struct Driver {
    /// Result of the first `cuInit`.
    pub init: Option<CUresult>,
    /// CUDA ordinal -> NVML index, after `CUDA_VISIBLE_DEVICES` / `CUDA_DEVICE_ORDER`.
    pub visible: Vec<usize>,
    pub devs: Vec<Dev>,
    pub ctxs: BTreeMap<usize, Ctx>,
    /// Live contexts of this process per NVML index (the ledger's context bit follows it).
    pub ctx_count: [u32; MAX_GPUS],
    pub allocs: BTreeMap<u64, Alloc>,
    pub arrays: BTreeMap<usize, ArrayObj>,
    pub pools: BTreeMap<usize, Pool>,
    pub phys: BTreeMap<u64, Phys>,
    /// Reserved virtual ranges: start -> size.
    pub reserved: BTreeMap<u64, u64>,
    pub mappings: BTreeMap<u64, Mapping>,
    /// Host ranges from `cuMemHostRegister`: start -> (size, NVML index, context).
    pub registered: BTreeMap<u64, (u64, usize, usize)>,
    pub streams: BTreeMap<usize, Stream>,
    /// Event handle -> time of the last record (ns since an arbitrary origin).
    pub events: BTreeMap<usize, u64>,
    next_handle: usize,
    next_ctx_id: u64,
}

static DRIVER: Mutex<Driver> = Mutex::new(Driver {
    init: None,
    visible: Vec::new(),
    devs: Vec::new(),
    ctxs: BTreeMap::new(),
    ctx_count: [0; MAX_GPUS],
    allocs: BTreeMap::new(),
    arrays: BTreeMap::new(),
    pools: BTreeMap::new(),
    phys: BTreeMap::new(),
    reserved: BTreeMap::new(),
    mappings: BTreeMap::new(),
    registered: BTreeMap::new(),
    streams: BTreeMap::new(),
    events: BTreeMap::new(),
    // Opaque handles live in a range no real pointer uses, and are never reused.
    next_handle: 0x0c0d_a000_0000,
    next_ctx_id: 1,
});

pub fn driver() -> MutexGuard<'static, Driver> {
    DRIVER.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// This thread's context stack; the top is the current context.
    pub static STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

pub fn stack_top() -> Option<usize> {
    STACK.with(|s| s.borrow().last().copied())
}

/// The devices `CUDA_VISIBLE_DEVICES` leaves, in order, as NVML indices.
///
/// `base` is CUDA ordinal -> NVML index before the variable applies; `uuids` the devices' UUIDs
/// by NVML index. Entries are indices into `base` or `GPU-` UUID prefixes that match exactly one
/// device; like the real driver, the list stops at the first entry that names no device (or one
/// already listed). Unset means all devices; empty means none.
pub fn parse_visible(spec: Option<&str>, base: &[usize], uuids: &[String]) -> Vec<usize> {
    let Some(spec) = spec else {
        return base.to_vec();
    };
    let mut out = Vec::new();
    for tok in spec.split(',') {
        let t = tok.trim();
        let found = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<usize>().ok().and_then(|i| base.get(i).copied())
        } else if t.len() > 4 && t[..4].eq_ignore_ascii_case("GPU-") {
            let want = t[4..].to_ascii_lowercase();
            let hits: Vec<usize> = base
                .iter()
                .copied()
                .filter(|&n| {
                    uuids.get(n).is_some_and(|u| {
                        u.len() > 4 && u[4..].to_ascii_lowercase().starts_with(&want)
                    })
                })
                .collect();
            if hits.len() == 1 {
                Some(hits[0])
            } else {
                None
            }
        } else {
            None
        };
        match found {
            Some(n) if !out.contains(&n) => out.push(n),
            _ => break,
        }
    }
    out
}

impl Driver {
    pub fn do_init(&mut self) -> CUresult {
        if let Some(r) = self.init {
            return r;
        }
        let m = machine();
        let base: Vec<usize> = match std::env::var("CUDA_DEVICE_ORDER").as_deref() {
            Ok("PCI_BUS_ID") => (0..m.gpus.len()).collect(),
            _ => m.cuda_order.clone(),
        };
        let uuids: Vec<String> = m.gpus.iter().map(|g| g.uuid.clone()).collect();
        let spec = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        self.visible = parse_visible(spec.as_deref(), &base, &uuids);
        self.devs = vec![Dev::default(); self.visible.len()];
        let r = if self.visible.is_empty() {
            CUDA_ERROR_NO_DEVICE
        } else {
            CUDA_SUCCESS
        };
        self.init = Some(r);
        r
    }

    /// Fails with NOT_INITIALIZED unless `cuInit` succeeded (also after it failed).
    pub fn ready(&self) -> R {
        match self.init {
            Some(CUDA_SUCCESS) => Ok(()),
            _ => Err(CUDA_ERROR_NOT_INITIALIZED),
        }
    }

    pub fn handle(&mut self) -> usize {
        self.next_handle += 0x40;
        self.next_handle
    }

    /// NVML index of a CUDA ordinal.
    pub fn nvml(&self, dev: CUdevice) -> Result<usize, CUresult> {
        self.ready()?;
        usize::try_from(dev)
            .ok()
            .and_then(|d| self.visible.get(d).copied())
            .ok_or(CUDA_ERROR_INVALID_DEVICE)
    }

    pub fn ordinal_of(&self, nvml: usize) -> Option<usize> {
        self.visible.iter().position(|&n| n == nvml)
    }

    /// The calling thread's current context, which must be alive.
    pub fn current(&self) -> Result<(usize, &Ctx), CUresult> {
        self.ready()?;
        let h = stack_top().ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        self.live_ctx(h).map(|c| (h, c))
    }

    pub fn live_ctx(&self, h: usize) -> Result<&Ctx, CUresult> {
        match self.ctxs.get(&h) {
            Some(c) if c.active => Ok(c),
            _ => Err(CUDA_ERROR_INVALID_CONTEXT),
        }
    }

    /// Counts a new context on `nvml`; the first one marks the process in the ledger.
    pub fn ctx_up(&mut self, nvml: usize) -> R {
        if self.ctx_count[nvml] == 0 {
            if let Some(l) = ledger() {
                if !l.set_context(nvml, true) {
                    return Err(CUDA_ERROR_OUT_OF_MEMORY);
                }
            }
        }
        self.ctx_count[nvml] += 1;
        Ok(())
    }

    pub fn new_ctx(&mut self, ord: usize, flags: u32, primary: bool) -> Result<usize, CUresult> {
        let nvml = self.visible[ord];
        self.ctx_up(nvml)?;
        let h = self.handle();
        let id = self.next_ctx_id;
        self.next_ctx_id += 1;
        self.ctxs.insert(
            h,
            Ctx {
                ord,
                nvml,
                flags,
                primary,
                active: true,
                id,
            },
        );
        Ok(h)
    }

    /// Ends a context: frees everything it owns, and unmarks the device when it was the last.
    pub fn ctx_down(&mut self, h: usize) {
        let nvml = match self.ctxs.get_mut(&h) {
            Some(c) if c.active => {
                c.active = false;
                c.nvml
            }
            _ => return,
        };
        let owned: Vec<u64> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.ctx == h)
            .map(|(&p, _)| p)
            .collect();
        for p in owned {
            self.free_alloc(p);
        }
        let arrays: Vec<usize> = self
            .arrays
            .iter()
            .filter(|(_, a)| a.ctx == h)
            .map(|(&k, _)| k)
            .collect();
        for k in arrays {
            if let Some(a) = self.arrays.remove(&k) {
                unreserve(a.nvml, a.bytes);
            }
        }
        self.streams.retain(|_, s| s.ctx != h);
        self.ctx_count[nvml] = self.ctx_count[nvml].saturating_sub(1);
        if self.ctx_count[nvml] == 0 {
            if let Some(l) = ledger() {
                l.set_context(nvml, false);
            }
        }
    }

    /// Removes an allocation, unmaps it, and gives its bytes back to the ledger.
    pub fn free_alloc(&mut self, p: u64) -> Option<Alloc> {
        let a = self.allocs.remove(&p)?;
        match a.kind {
            Kind::Host => {}
            Kind::Pool(pool) => {
                if let Some(pl) = self.pools.get_mut(&pool) {
                    pl.used = pl.used.saturating_sub(a.size);
                }
                unreserve(a.nvml, a.size);
            }
            _ => unreserve(a.nvml, a.size),
        }
        unsafe { libc::munmap(p as *mut libc::c_void, a.map_len) };
        Some(a)
    }

    /// Maps fresh memory and records it; device kinds take their bytes from the ledger first.
    pub fn alloc(
        &mut self,
        size: u64,
        nvml: usize,
        ctx: usize,
        kind: Kind,
        low32: bool,
    ) -> Result<u64, CUresult> {
        if size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if kind != Kind::Host && !reserve(nvml, size) {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let len = match usize::try_from(size).ok().and_then(page_round) {
            Some(l) => l,
            None => {
                if kind != Kind::Host {
                    unreserve(nvml, size);
                }
                return Err(CUDA_ERROR_OUT_OF_MEMORY);
            }
        };
        // Untouched pages cost nothing, so an 80 GiB device fits in a small test machine.
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        if low32 {
            flags |= libc::MAP_32BIT;
        }
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            if kind != Kind::Host {
                unreserve(nvml, size);
            }
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let p = p as u64;
        self.allocs.insert(
            p,
            Alloc {
                size,
                map_len: len,
                nvml,
                ctx,
                kind,
                host_flags: 0,
            },
        );
        Ok(p)
    }

    /// The allocation containing `p`: (base, allocation).
    pub fn find_alloc(&self, p: u64) -> Option<(u64, &Alloc)> {
        let (&base, a) = self.allocs.range(..=p).next_back()?;
        (p < base + a.size.max(1)).then_some((base, a))
    }

    /// Whether `[p, p+n)` is memory this driver handed out (an allocation or a mapped range).
    pub fn valid_range(&self, p: u64, n: u64) -> bool {
        self.accessible(p, n, 1)
    }

    /// Like `valid_range`, for a range about to be written.
    pub fn writable_range(&self, p: u64, n: u64) -> bool {
        self.accessible(p, n, 3)
    }

    /// Whether `p` lies in memory this driver knows (allocated, mapped or registered).
    pub fn known(&self, p: u64) -> bool {
        self.find_alloc(p).is_some()
            || self.registered_range(p, 1)
            || matches!(self.mappings.range(..=p).next_back(), Some((&b, m)) if p < b + m.size)
            || matches!(self.reserved.range(..=p).next_back(), Some((&b, &s)) if p < b + s)
    }

    fn accessible(&self, p: u64, n: u64, need: u32) -> bool {
        if let Some((base, a)) = self.find_alloc(p) {
            return p + n <= base + a.size;
        }
        // Adjacent mappings may together cover the range; all must allow the access, since
        // touching a protected page would crash the caller instead of failing the call.
        let Some((&base, m)) = self.mappings.range(..=p).next_back() else {
            return false;
        };
        let mut end = base + m.size;
        if p >= end || m.access & need != need {
            return false;
        }
        while end < p + n {
            match self.mappings.get(&end) {
                Some(next) if next.access & need == need => end += next.size,
                _ => return false,
            }
        }
        true
    }
}

impl Driver {
    pub fn registered_range(&self, p: u64, n: u64) -> bool {
        match self.registered.range(..=p).next_back() {
            Some((&base, &(size, _, _))) => p + n <= base + size,
            None => false,
        }
    }
}

pub fn page_round(n: usize) -> Option<usize> {
    let page = 4096usize;
    n.checked_add(page - 1).map(|v| v & !(page - 1))
}

pub fn reserve(nvml: usize, bytes: u64) -> bool {
    match ledger() {
        Some(l) => l.reserve(nvml, bytes),
        // Without the shared file the machine is unlimited, rather than unusable.
        None => true,
    }
}

pub fn unreserve(nvml: usize, bytes: u64) {
    if let Some(l) = ledger() {
        l.release(nvml, bytes);
    }
}

/// Runs an entry point's body: maps `Ok` to success and a panic to CUDA_ERROR_UNKNOWN, since
/// unwinding into C is undefined.
pub fn ffi(f: impl FnOnce() -> R) -> CUresult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => CUDA_SUCCESS,
        Ok(Err(e)) => e,
        Err(_) => CUDA_ERROR_UNKNOWN,
    }
}

/// Writes an out-parameter, refusing NULL.
///
/// # Safety
/// `p` must be NULL or valid for a write of `T`.
pub unsafe fn out<T>(p: *mut T, v: T) -> R {
    if p.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    p.write(v);
    Ok(())
}

/// The ledger bytes currently used on an NVML device.
pub fn used(nvml: usize) -> u64 {
    ledger().map(|l| l.used(nvml)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> Vec<String> {
        vec![
            "GPU-aaaa1111-0000-0000-0000-000000000000".into(),
            "GPU-bbbb2222-0000-0000-0000-000000000000".into(),
            "GPU-bbbb3333-0000-0000-0000-000000000000".into(),
            "GPU-cccc4444-0000-0000-0000-000000000000".into(),
        ]
    }

    #[test]
    fn visible_devices() {
        let u = uuids();
        let base = [0, 1, 2, 3];
        let rev = [3, 2, 1, 0];
        assert_eq!(parse_visible(None, &base, &u), vec![0, 1, 2, 3]);
        assert_eq!(parse_visible(Some(""), &base, &u), Vec::<usize>::new());
        assert_eq!(parse_visible(Some("2,0"), &base, &u), vec![2, 0]);
        assert_eq!(parse_visible(Some(" 1 , 3 "), &base, &u), vec![1, 3]);
        // Indices refer to the base order.
        assert_eq!(parse_visible(Some("0,1"), &rev, &u), vec![3, 2]);
        // The first invalid entry ends the list.
        assert_eq!(parse_visible(Some("1,7,2"), &base, &u), vec![1]);
        assert_eq!(parse_visible(Some("-1"), &base, &u), Vec::<usize>::new());
        assert_eq!(parse_visible(Some("1,x,2"), &base, &u), vec![1]);
        assert_eq!(parse_visible(Some("1,,2"), &base, &u), vec![1]);
        assert_eq!(parse_visible(Some("1,1,2"), &base, &u), vec![1]);
        // UUIDs by unique prefix, mixed with indices.
        assert_eq!(parse_visible(Some("GPU-cccc,0"), &base, &u), vec![3, 0]);
        assert_eq!(parse_visible(Some(&u[2]), &base, &u), vec![2]);
        assert_eq!(parse_visible(Some("gpu-AAAA1111"), &base, &u), vec![0]);
        // Ambiguous or unknown prefixes are invalid.
        assert_eq!(parse_visible(Some("0,GPU-bbbb,1"), &base, &u), vec![0]);
        assert_eq!(
            parse_visible(Some("GPU-dddd"), &base, &u),
            Vec::<usize>::new()
        );
        assert_eq!(
            parse_visible(Some("aaaa1111"), &base, &u),
            Vec::<usize>::new()
        );
        assert_eq!(
            parse_visible(Some("MIG-aaaa1111"), &base, &u),
            Vec::<usize>::new()
        );
    }
}
