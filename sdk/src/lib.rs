//! `genv._native`: the state operations of genv-state for the Python SDK (`genv.sdk`).
//!
//! Thin on purpose: the Python layer owns the process side (os.environ, context managers,
//! warnings) and this module owns everything that touches the shared state, so the SDK and the
//! CLI cannot disagree. Errors: bad values raise ValueError (also an int too big for any
//! integer type, and a str that is not UTF-8), everything else RuntimeError, each with
//! genv-state's message.

use genv_state::devices::Gpu;
use genv_state::{
    devices, lock, text, AttachOutcome, Caller, Capacity, Config, DeviceCount, DeviceIndex, EnvId,
    EnvInfo, Error, Genv, Input, Name, ProcessId, Whole,
};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyUnicodeEncodeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::Mutex;

fn err(e: Error) -> PyErr {
    match e {
        Error::Input(m) => PyValueError::new_err(m),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn open() -> PyResult<Genv> {
    Genv::open().map_err(err)
}

/// An int argument of any size. PyO3 raises OverflowError for one that does not fit the Rust
/// type; keeping its digits instead lets the state's rule raise the ValueError that any other
/// value out of range gets, with the same message.
enum Int {
    Fits(i64),
    Huge(String),
}

impl<'py> FromPyObject<'py> for Int {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<i64>() {
            Ok(i) => Ok(Int::Fits(i)),
            Err(e) if e.is_instance_of::<PyOverflowError>(ob.py()) => {
                Ok(Int::Huge(ob.str()?.extract()?))
            }
            Err(e) => Err(e),
        }
    }
}

impl Int {
    /// The value checked by the state's rule for `T` (a ValueError naming the input).
    fn get<T: Whole>(&self) -> PyResult<T> {
        match self {
            Int::Fits(i) => T::from_int(*i),
            Int::Huge(digits) => Err(T::invalid(digits)),
        }
        .map_err(err)
    }
}

/// A str argument. A Python str may hold lone surrogates (how `os.fsdecode` carries bytes that
/// are not UTF-8), which Rust text cannot: such a str is kept as those bytes, so that the check
/// names the argument as the CLI does (PyO3 would raise UnicodeEncodeError, naming nothing).
enum Text {
    Utf8(String),
    NotUtf8(Vec<u8>),
}

impl<'py> FromPyObject<'py> for Text {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>() {
            Ok(s) => Ok(Text::Utf8(s)),
            Err(e) if e.is_instance_of::<PyUnicodeEncodeError>(ob.py()) => {
                // surrogateescape gives back the bytes os.fsdecode took; other lone
                // surrogates only have their surrogatepass form.
                let encoded = ob
                    .call_method1("encode", ("utf-8", "surrogateescape"))
                    .or_else(|_| ob.call_method1("encode", ("utf-8", "surrogatepass")))?;
                Ok(Text::NotUtf8(
                    encoded.downcast::<PyBytes>()?.as_bytes().to_vec(),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

impl Text {
    /// The value checked by the state's rule for `T` (a ValueError naming the input).
    fn parse<T: Input>(self) -> PyResult<T> {
        match self {
            Text::Utf8(s) => T::parse(&s),
            Text::NotUtf8(b) => Err(T::not_utf8(&b)),
        }
        .map_err(err)
    }

    /// An environment identifier to look up: any text (one that genv never made is simply not
    /// found), refused only when it is not UTF-8.
    fn eid(self) -> PyResult<String> {
        match self {
            Text::Utf8(s) => Ok(s),
            Text::NotUtf8(b) => Err(err(EnvId::not_utf8(&b))),
        }
    }
}

/// The machine's GPUs. `nvml` is false in a process that runs under the shim: its NVML shows
/// the environment's view (renumbered, capped), which must never become the state's device
/// list, so the list last written to the state is used there (NVML only when there is none).
fn machine_gpus(genv: &Genv, nvml: bool) -> Result<Vec<Gpu>, Error> {
    // System mode: the service reads the machine itself.
    if !genv.needs_gpus() {
        return Ok(Vec::new());
    }
    if !nvml {
        let known: Vec<Gpu> = genv
            .devices()
            .into_iter()
            .map(|d| Gpu {
                index: d.index,
                uuid: d.uuid,
                name: d.name,
                total_memory: d.total_memory,
            })
            .collect();
        if !known.is_empty() {
            return Ok(known);
        }
    }
    devices::read_gpus()
}

/// A configuration from Python's values, each checked by the state's rule for it.
fn config(name: Option<Text>, gpus: Option<Int>, gpu_memory: Option<Text>) -> PyResult<Config> {
    // The count first, as before: of several bad values, the same one is reported.
    let gpus = gpus.map(|g| g.get::<DeviceCount>()).transpose()?;
    Ok(Config {
        name: name.map(Text::parse::<Name>).transpose()?,
        gpus,
        gpu_memory: gpu_memory.map(Text::parse::<Capacity>).transpose()?,
    })
}

/// A device index from Python (`attach(index=…)`, `detach(index=…)`).
fn device_index(index: Option<Int>) -> PyResult<Option<u32>> {
    index
        .map(|i| i.get::<DeviceIndex>().map(DeviceIndex::get))
        .transpose()
}

fn env_dict<'py>(py: Python<'py>, e: &EnvInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("eid", &e.eid)?;
    d.set_item("uid", e.uid)?;
    d.set_item("username", &e.username)?;
    d.set_item("name", e.config.name.as_deref())?;
    d.set_item("gpus", e.config.gpus.map(DeviceCount::get))?;
    d.set_item(
        "gpu_memory",
        e.config.gpu_memory.as_ref().map(Capacity::as_str),
    )?;
    d.set_item("created_ms", e.created_ms)?;
    d.set_item("pids", &e.pids)?;
    d.set_item("processes", &e.processes)?;
    d.set_item("members", &e.members)?;
    d.set_item("member", e.member.as_deref())?;
    d.set_item("attached", &e.attached)?;
    d.set_item("used_memory", &e.used_memory)?;
    Ok(d)
}

/// Validates a configuration (raises ValueError naming the bad field).
#[pyfunction]
#[pyo3(signature = (name=None, gpus=None, gpu_memory=None))]
fn validate_config(
    name: Option<Text>,
    gpus: Option<Int>,
    gpu_memory: Option<Text>,
) -> PyResult<()> {
    config(name, gpus, gpu_memory).map(|_| ())
}

/// Parses a GPU memory amount such as `4g` into bytes.
#[pyfunction]
fn parse_gpu_memory(amount: Text) -> PyResult<u64> {
    amount.parse::<Capacity>().map(|c| c.bytes())
}

/// `s` quoted for a message as genv quotes input (control characters and bytes that are not
/// UTF-8 escaped), for the messages of genv.sdk that show a value.
#[pyfunction]
fn quote(s: Text) -> String {
    match s {
        Text::Utf8(s) => text::quote(&s),
        Text::NotUtf8(b) => text::quote_bytes(&b),
    }
}

/// Creates (or joins) environment `eid` for process `pid`, configures it and, when `attach`
/// and a device count is configured, attaches it; all or nothing.
#[pyfunction]
#[pyo3(signature = (eid, pid, name=None, gpus=None, gpu_memory=None, attach=true, over_subscribe=false, nvml=true))]
#[allow(clippy::too_many_arguments)]
fn activate<'py>(
    py: Python<'py>,
    eid: Text,
    pid: Int,
    name: Option<Text>,
    gpus: Option<Int>,
    gpu_memory: Option<Text>,
    attach: bool,
    over_subscribe: bool,
    nvml: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let eid = eid.parse::<EnvId>()?;
    let pid = pid.get::<ProcessId>()?.get();
    let c = config(name, gpus, gpu_memory)?;
    let info = py
        .allow_threads(|| -> Result<EnvInfo, Error> {
            let genv = Genv::open()?;
            let gpus_list;
            let att = if attach && c.gpus.is_some() {
                gpus_list = machine_gpus(&genv, nvml)?;
                Some((gpus_list.as_slice(), over_subscribe))
            } else {
                None
            };
            genv.activate(&Caller::current(), &eid, pid, &c, att)
        })
        .map_err(err)?;
    env_dict(py, &info)
}

/// Removes `pid` from environment `eid` (the environment ends with its last process).
#[pyfunction]
fn deactivate(py: Python<'_>, eid: Text, pid: Int) -> PyResult<()> {
    let eid = eid.eid()?;
    let pid = pid.get::<ProcessId>()?.get();
    py.allow_threads(|| Genv::open()?.deactivate(&Caller::current(), &eid, pid))
        .map_err(err)
}

/// Environment `eid` as a dict, or None when it does not exist (any more).
#[pyfunction]
fn env<'py>(py: Python<'py>, eid: Text) -> PyResult<Option<Bound<'py, PyDict>>> {
    let eid = eid.eid()?;
    let genv = open()?;
    genv.env(&eid).map(|e| env_dict(py, &e)).transpose()
}

/// Every live environment, oldest first.
#[pyfunction]
fn envs(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let genv = open()?;
    genv.envs().iter().map(|e| env_dict(py, e)).collect()
}

/// Every device the state knows (refreshed from NVML when it can be read), with attachments.
#[pyfunction]
#[pyo3(signature = (nvml=true))]
fn devices_list(py: Python<'_>, nvml: bool) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let genv = open()?;
    if !genv.needs_gpus() {
        py.allow_threads(|| genv.refresh_devices(&[]))
            .map_err(err)?;
    } else if nvml {
        if let Ok(gpus) = py.allow_threads(devices::read_gpus) {
            genv.refresh_devices(&gpus).map_err(err)?;
        }
    }
    genv.devices()
        .iter()
        .map(|d| {
            let o = PyDict::new(py);
            o.set_item("index", d.index)?;
            o.set_item("uuid", &d.uuid)?;
            o.set_item("name", &d.name)?;
            o.set_item("total_memory", d.total_memory)?;
            let eids: Vec<&str> = d.attachments.iter().map(|a| a.eid.as_str()).collect();
            o.set_item("eids", eids)?;
            Ok(o)
        })
        .collect()
}

/// Replaces the configuration of environment `eid`.
#[pyfunction]
#[pyo3(signature = (eid, name=None, gpus=None, gpu_memory=None))]
fn set_config(
    eid: Text,
    name: Option<Text>,
    gpus: Option<Int>,
    gpu_memory: Option<Text>,
) -> PyResult<()> {
    let eid = eid.eid()?;
    let c = config(name, gpus, gpu_memory)?;
    open()?
        .set_config(&Caller::current(), &eid, &c)
        .map_err(err)
}

/// Attaches per the configured device count, or device `index`; returns the attached indices.
#[pyfunction]
#[pyo3(signature = (eid, index=None, over_subscribe=false, nvml=true))]
fn attach(
    py: Python<'_>,
    eid: Text,
    index: Option<Int>,
    over_subscribe: bool,
    nvml: bool,
) -> PyResult<Vec<u32>> {
    let eid = eid.eid()?;
    let index = device_index(index)?;
    let out = py
        .allow_threads(|| -> Result<AttachOutcome, Error> {
            let genv = Genv::open()?;
            let gpus = machine_gpus(&genv, nvml)?;
            genv.attach(&Caller::current(), &eid, &gpus, index, over_subscribe)
        })
        .map_err(err)?;
    match out {
        AttachOutcome::Attached(v) => Ok(v),
        AttachOutcome::Failed(m) => Err(PyRuntimeError::new_err(m)),
    }
}

/// Detaches from every device, or from device `index` only.
#[pyfunction]
#[pyo3(signature = (eid, index=None))]
fn detach(eid: Text, index: Option<Int>) -> PyResult<()> {
    let eid = eid.eid()?;
    let index = device_index(index)?;
    open()?.detach(&Caller::current(), &eid, index).map_err(err)
}

/// Held device locks; `release()` (or garbage collection, or the process dying) lets go.
#[pyclass(module = "genv._native")]
struct DeviceLock {
    inner: Mutex<Option<lock::DeviceLock>>,
}

#[pymethods]
impl DeviceLock {
    /// The NVML indices held, ascending (empty once released, or when nothing was to be locked).
    fn devices(&self) -> Vec<u32> {
        self.inner
            .lock()
            .map(|g| g.as_ref().map(|l| l.devices()).unwrap_or_default())
            .unwrap_or_default()
    }

    fn release(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.take();
        }
    }
}

/// Blocks until environment `eid` has exclusive use of its attached devices among the
/// environments sharing them. The GIL is released while waiting; Ctrl-C interrupts the wait.
#[pyfunction]
fn lock_env(py: Python<'_>, eid: Text) -> PyResult<DeviceLock> {
    let eid = eid.eid()?;
    let genv = open()?;
    let mut pending: Option<PyErr> = None;
    let r = py.allow_threads(|| {
        lock::lock_env(&genv, &eid, &mut || {
            // A signal interrupted the wait: let Python run its handlers (KeyboardInterrupt).
            Python::with_gil(|py| py.check_signals()).map_err(|e| {
                pending = Some(e);
                Error::Input("interrupted".into())
            })
        })
    });
    match (r, pending) {
        (_, Some(e)) => Err(e),
        (Ok(l), None) => Ok(DeviceLock {
            inner: Mutex::new(Some(l)),
        }),
        (Err(e), None) => Err(err(e)),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The messages genv.sdk raises itself (it reads os.environ, not the state), as the CLI
    // words them.
    m.add("NOT_ACTIVE", Error::NotActive.to_string())?;
    m.add("ALREADY_ACTIVE", Error::AlreadyActive.to_string())?;
    // The longest environment identifier (genv.ray builds identifiers to fit it).
    m.add("EID_MAX", genv_state::layout::EID_MAX)?;
    m.add_function(wrap_pyfunction!(validate_config, m)?)?;
    m.add_function(wrap_pyfunction!(parse_gpu_memory, m)?)?;
    m.add_function(wrap_pyfunction!(quote, m)?)?;
    m.add_function(wrap_pyfunction!(activate, m)?)?;
    m.add_function(wrap_pyfunction!(deactivate, m)?)?;
    m.add_function(wrap_pyfunction!(env, m)?)?;
    m.add_function(wrap_pyfunction!(envs, m)?)?;
    m.add_function(wrap_pyfunction!(devices_list, m)?)?;
    m.add_function(wrap_pyfunction!(set_config, m)?)?;
    m.add_function(wrap_pyfunction!(attach, m)?)?;
    m.add_function(wrap_pyfunction!(detach, m)?)?;
    m.add_function(wrap_pyfunction!(lock_env, m)?)?;
    m.add_class::<DeviceLock>()?;
    Ok(())
}
