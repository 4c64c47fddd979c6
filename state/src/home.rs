//! Configuration kept as code: the nearest `.genv/` directory from the working directory up,
//! else `~/.genv`, holding `config.json`.

use crate::config::{Config, Saved};
use crate::text::quote_path;
use crate::Error;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";

/// The `.genv` directory that applies to `cwd`, if any.
pub fn find_home(cwd: &Path) -> Option<PathBuf> {
    for dir in cwd.ancestors() {
        let cand = dir.join(".genv");
        if cand.is_dir() {
            return Some(cand);
        }
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let cand = PathBuf::from(home).join(".genv");
    cand.is_dir().then_some(cand)
}

/// Reads the saved configuration of `home` (an empty one if none was saved).
pub fn load(home: &Path) -> Result<Config, Error> {
    let path = home.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => {
            return Err(Error::Input(format!(
                "cannot read {}: {e}",
                quote_path(&path)
            )))
        }
    };
    let saved: Saved = serde_json::from_str(&text).map_err(|e| {
        Error::Input(format!(
            "invalid saved configuration {}: {e}; fix it or run `genv config --save` to rewrite it",
            quote_path(&path)
        ))
    })?;
    Config::try_from(saved).map_err(|e| {
        Error::Input(format!(
            "invalid saved configuration {}: {e}",
            quote_path(&path)
        ))
    })
}

/// Writes `config` to `home` (atomically: a temporary file renamed into place).
pub fn save(home: &Path, config: &Config) -> Result<PathBuf, Error> {
    let path = home.join(CONFIG_FILE);
    let tmp = home.join(format!(".{CONFIG_FILE}.{}", std::process::id()));
    let text = serde_json::to_string_pretty(config).expect("config serialises") + "\n";
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Input(format!("cannot write {}: {e}", quote_path(&path)))
        })?;
    Ok(path)
}
