//! Configuration kept as code: the nearest `.genv/` directory from the working directory up,
//! else `~/.genv`.
//!
//! Two forms are read: the original genv's, one file per field (`name`, `gpus`, `gpu-memory`,
//! each holding its value), and `config.json` (what genv wrote before). The per-field form is
//! the one written: a `.genv/` committed to a project is read by both genvs alike (the original
//! reads only that form), and a script reads a field with `cat .genv/gpus`. Saving it removes a
//! `config.json` there, so that one form remains; a directory holding both is refused.

use crate::config::{Config, Saved};
use crate::input::{Capacity, DeviceCount, Input, Name};
use crate::text::quote_path;
use crate::Error;
use std::path::{Path, PathBuf};

/// The older form, read only.
pub const CONFIG_FILE: &str = "config.json";

/// The per-field files, as the original genv names them.
pub const FIELD_FILES: [&str; 3] = ["name", "gpus", "gpu-memory"];

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

/// The text of `path`, None if there is no such file.
fn read(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Input(format!(
            "cannot read {}: {e}",
            quote_path(path)
        ))),
    }
}

/// Reads the saved configuration of `home` (an empty one if none was saved), in either form.
pub fn load(home: &Path) -> Result<Config, Error> {
    let json_path = home.join(CONFIG_FILE);
    let json = read(&json_path)?;
    let mut fields = Vec::new();
    for f in FIELD_FILES {
        let path = home.join(f);
        if let Some(t) = read(&path)? {
            fields.push((f, path, t));
        }
    }
    if json.is_some() && !fields.is_empty() {
        let names: Vec<String> = fields.iter().map(|(_, p, _)| quote_path(p)).collect();
        return Err(Error::Input(format!(
            "{} holds both {} and the original genv's {}: remove one of the two forms (`genv \
             activate --no-load`, then `genv config --save`, writes the active environment's \
             configuration as the per-field files alone)",
            quote_path(home),
            quote_path(&json_path),
            names.join(", ")
        )));
    }
    if let Some(text) = json {
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "invalid saved configuration {}: {e}; fix it or run `genv config --save` to rewrite it",
                quote_path(&json_path)
            ))
        })?;
        return Config::try_from(saved).map_err(|e| {
            Error::Input(format!(
                "invalid saved configuration {}: {e}",
                quote_path(&json_path)
            ))
        });
    }
    let mut config = Config::default();
    for (f, path, text) in fields {
        // As the original: the value without surrounding whitespace (a final newline).
        let v = text.trim();
        let bad = |e: Error| {
            Error::Input(format!(
                "invalid saved configuration {}: {e}",
                quote_path(&path)
            ))
        };
        match f {
            "name" => config.name = Some(Name::parse(v).map_err(bad)?),
            "gpus" => config.gpus = Some(DeviceCount::parse(v).map_err(bad)?),
            _ => config.gpu_memory = Some(Capacity::parse(v).map_err(bad)?),
        }
    }
    Ok(config)
}

/// Writes `config` to `home` in the per-field form: each set field's file written atomically
/// (a temporary file renamed into place), each unset one removed, then `config.json` removed.
pub fn save(home: &Path, config: &Config) -> Result<PathBuf, Error> {
    let values = [
        config.name.as_ref().map(|n| n.to_string()),
        config.gpus.map(|g| g.to_string()),
        config.gpu_memory.as_ref().map(|m| m.to_string()),
    ];
    for (f, v) in FIELD_FILES.iter().zip(values) {
        let path = home.join(f);
        let done = match v {
            Some(v) => {
                let tmp = home.join(format!(".{f}.{}", std::process::id()));
                std::fs::write(&tmp, format!("{v}\n"))
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(&tmp);
                    })
            }
            None => remove(&path),
        };
        done.map_err(|e| Error::Input(format!("cannot write {}: {e}", quote_path(&path))))?;
    }
    let json = home.join(CONFIG_FILE);
    remove(&json).map_err(|e| Error::Input(format!("cannot remove {}: {e}", quote_path(&json))))?;
    Ok(home.to_path_buf())
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("genv-home-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn both_forms_are_read_and_the_original_form_is_written() {
        let d = dir("forms");
        // The original genv's files, as it writes them (no final newline).
        std::fs::write(d.join("name"), "my env").unwrap();
        std::fs::write(d.join("gpus"), "2").unwrap();
        std::fs::write(d.join("gpu-memory"), "4g").unwrap();
        let c = load(&d).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"name":"my env","gpus":2,"gpu_memory":"4g"}"#
        );
        for f in FIELD_FILES {
            std::fs::remove_file(d.join(f)).unwrap();
        }
        std::fs::write(d.join(CONFIG_FILE), r#"{"gpus": 1}"#).unwrap();
        let c = load(&d).unwrap();
        assert_eq!(c.gpus.map(|g| g.to_string()).as_deref(), Some("1"));
        // Saving writes the fields and removes config.json; an unset field has no file.
        save(&d, &c).unwrap();
        assert!(!d.join(CONFIG_FILE).exists());
        assert_eq!(std::fs::read_to_string(d.join("gpus")).unwrap(), "1\n");
        assert!(!d.join("name").exists());
        assert_eq!(load(&d).unwrap(), c);
        // Both forms at once are refused, naming both.
        std::fs::write(d.join(CONFIG_FILE), "{}").unwrap();
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("gpus"), "{err}");
        std::fs::remove_file(d.join(CONFIG_FILE)).unwrap();
        std::fs::write(d.join("gpus"), "two\n").unwrap();
        let err = load(&d).unwrap_err().to_string();
        assert!(err.starts_with("invalid saved configuration "), "{err}");
        assert!(err.contains("invalid device count 'two'"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
