//! `genv kernel install | uninstall`: a Jupyter kernelspec whose kernel runs in its own GPU
//! environment: its argv is `genv exec --name N [--gpus N] [--gpu-memory M] -- python -m
//! ipykernel_launcher -f {connection_file}`, so every kernel started from it gets a fresh
//! environment (under the shim, with its devices and capacity), ended when the kernel ends.

use crate::exit::Exit;
use crate::values::{checked, Checked};
use genv_state::text::quote_path;
use genv_state::{Capacity, DeviceCount, Error, Input, Name};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Args {
    /// Write a kernelspec whose kernels run each in a fresh environment
    Install(Install),
    /// Remove a kernelspec that `genv kernel install` wrote
    Uninstall(Where),
}

#[derive(clap::Args, Clone, Debug)]
pub struct Where {
    /// The kernelspec's name (letters, digits, `.`, `_`, `-`), also the environments' name
    #[arg(long, value_parser = checked(kernel_name))]
    name: Checked<Name>,
    /// Install into PREFIX/share/jupyter/kernels (e.g. a venv's sys.prefix) instead of the
    /// user's Jupyter data directory ($JUPYTER_DATA_DIR, else ~/.local/share/jupyter)
    #[arg(long)]
    prefix: Option<PathBuf>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct Install {
    #[command(flatten)]
    at: Where,
    /// Device count of each kernel's environment
    #[arg(long, allow_hyphen_values = true, value_parser = checked(DeviceCount::parse_os))]
    gpus: Option<Checked<DeviceCount>>,
    /// GPU memory capacity per device, e.g. 4g, 4GiB, 42mi
    #[arg(long, allow_hyphen_values = true, value_parser = checked(Capacity::parse_os))]
    gpu_memory: Option<Checked<Capacity>>,
    /// The Python that runs the kernel (it needs ipykernel); default: python3 on PATH
    #[arg(long)]
    python: Option<PathBuf>,
    /// The name Jupyter shows (default: "Python (genv NAME: N GPUs, M)")
    #[arg(long)]
    display_name: Option<String>,
}

/// A kernelspec name Jupyter accepts, which is also a valid environment name.
fn kernel_name(s: &std::ffi::OsStr) -> Result<Name, Error> {
    let n = Name::parse_os(s)?;
    if n.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(n)
    } else {
        Err(Error::Input(format!(
            "invalid kernel name {}: letters, digits, '.', '_' and '-' only (Jupyter's rule)",
            genv_state::text::quote(&n)
        )))
    }
}

impl Where {
    fn dir(&self, name: &str) -> Result<PathBuf, Error> {
        let data = match &self.prefix {
            Some(p) => p.join("share/jupyter"),
            None => match std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
                Some(d) => PathBuf::from(d),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|h| !h.is_empty())
                        .ok_or_else(|| {
                            Error::Input(
                                "HOME is not set: pass --prefix or set JUPYTER_DATA_DIR".into(),
                            )
                        })?;
                    PathBuf::from(home).join(".local/share/jupyter")
                }
            },
        };
        // Jupyter finds kernelspecs by lower-case directory names.
        Ok(data.join("kernels").join(name.to_lowercase()))
    }
}

/// `name` on PATH, as an absolute path (not resolved through links: a venv's python is a link
/// whose target would leave the venv).
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && p.is_absolute())
}

pub fn run(a: Args) -> Result<Exit, Error> {
    match a {
        Args::Install(i) => install(i),
        Args::Uninstall(w) => {
            let name = w.name.clone().get()?;
            let dir = w.dir(&name)?;
            let spec = dir.join("kernel.json");
            let ours = std::fs::read_to_string(&spec)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["metadata"]["genv"].is_object());
            if !ours {
                return Err(Error::Input(format!(
                    "no kernelspec of genv at {}",
                    quote_path(&dir)
                )));
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::Input(format!("cannot remove {}: {e}", quote_path(&dir))))?;
            println!("{}", dir.display());
            Ok(Exit::Success)
        }
    }
}

fn install(i: Install) -> Result<Exit, Error> {
    let name = i.at.name.clone().get()?;
    let gpus = Checked::opt(i.gpus)?;
    let gpu_memory = Checked::opt(i.gpu_memory)?;
    let python = match i.python {
        Some(p) if p.is_file() => std::path::absolute(&p).unwrap_or(p),
        Some(p) => {
            return Err(Error::Input(format!(
                "--python {}: no such file",
                quote_path(&p)
            )))
        }
        None => on_path("python3").ok_or_else(|| {
            Error::Input("no python3 on PATH: pass --python /path/to/python".into())
        })?,
    };
    let genv = std::env::current_exe()
        .map_err(|e| Error::State(format!("cannot locate the genv binary: {e}")))?;
    let text = |p: &Path| -> Result<String, Error> {
        p.to_str().map(str::to_string).ok_or_else(|| {
            Error::Input(format!(
                "{} is not UTF-8, which kernel.json needs",
                quote_path(p)
            ))
        })
    };
    let mut argv = vec![
        text(&genv)?,
        "exec".into(),
        "--name".into(),
        name.to_string(),
    ];
    if let Some(g) = gpus {
        argv.extend(["--gpus".into(), g.to_string()]);
    }
    if let Some(m) = &gpu_memory {
        argv.extend(["--gpu-memory".into(), m.to_string()]);
    }
    // The kernel's own configuration, whatever .genv/ the notebook server started in.
    argv.push("--no-load".into());
    argv.extend([
        "--".into(),
        text(&python)?,
        "-m".into(),
        "ipykernel_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ]);
    let display = i.display_name.unwrap_or_else(|| {
        let mut what = Vec::new();
        if let Some(g) = gpus {
            what.push(format!("{g} GPU{}", if g.get() == 1 { "" } else { "s" }));
        }
        if let Some(m) = &gpu_memory {
            what.push(m.to_string());
        }
        if what.is_empty() {
            format!("Python (genv {name})")
        } else {
            format!("Python (genv {name}: {})", what.join(", "))
        }
    });
    let spec = serde_json::json!({
        "argv": argv,
        "display_name": display,
        "language": "python",
        // Interrupts go to the kernel's process group (genv exec passes them on by being in it).
        "interrupt_mode": "signal",
        "metadata": {"genv": {"name": name.to_string(), "gpus": gpus.map(|g| g.get()), "gpu_memory": gpu_memory.as_ref().map(|m| m.to_string())}},
    });
    let dir = i.at.dir(&name)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Input(format!("cannot create {}: {e}", quote_path(&dir))))?;
    let path = dir.join("kernel.json");
    let tmp = dir.join(format!(".kernel.json.{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_string_pretty(&spec).expect("serialises") + "\n",
    )
    .and_then(|_| std::fs::rename(&tmp, &path))
    .map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Input(format!("cannot write {}: {e}", quote_path(&path)))
    })?;
    println!("{}", dir.display());
    Ok(Exit::Success)
}
