//! An environment's configuration: typed values (checked once, where they come in: see
//! input.rs), how the state records them, and the form `.genv/config.json` keeps them in.

use crate::input::{Capacity, DeviceCount, Input, Name, Whole};
use crate::layout::{get_str, put_str, EnvRec};
use crate::Error;
use serde::{Deserialize, Serialize};

/// An environment's configuration, as the user wrote it.
/// On the wire (the service) and in `.genv/config.json` alike, read through the input rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Saved")]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<DeviceCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<Capacity>,
}

/// `.genv/config.json` as read, before its values are checked: a value that breaks a rule is
/// refused with the rule's message, not serde's.
#[derive(Deserialize)]
pub(crate) struct Saved {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    gpus: Option<u32>,
    #[serde(default)]
    gpu_memory: Option<String>,
}

impl Config {
    /// Fields of `other` that are set replace ours.
    pub fn overlay(&mut self, other: &Config) {
        if other.name.is_some() {
            self.name.clone_from(&other.name);
        }
        if other.gpus.is_some() {
            self.gpus = other.gpus;
        }
        if other.gpu_memory.is_some() {
            self.gpu_memory.clone_from(&other.gpu_memory);
        }
    }

    /// What `e` records, as it was recorded: the capacity's bytes are the ones parsed when it
    /// was given, never parsed again from its text.
    pub(crate) fn of(e: &EnvRec) -> Config {
        let name = e.name();
        Config {
            name: (!name.is_empty()).then_some(Name(name)),
            gpus: e.gpus().map(DeviceCount),
            gpu_memory: e.gpu_memory().map(|bytes| Capacity {
                bytes,
                text: get_str(&e.cfg_mem_text),
            }),
        }
    }

    /// Records this configuration in `e`. Every value fits its field: the input rules keep
    /// text within what the fields hold.
    pub(crate) fn record(&self, e: &mut EnvRec) {
        put_str(&mut e.name, self.name.as_deref().unwrap_or(""));
        e.cfg_gpus = self.gpus.map_or(-1, |g| g.0 as i32);
        match &self.gpu_memory {
            Some(c) => {
                e.cfg_mem_bytes = c.bytes;
                put_str(&mut e.cfg_mem_text, &c.text);
            }
            None => {
                e.cfg_mem_bytes = 0;
                e.cfg_mem_text.fill(0);
            }
        }
    }
}

impl TryFrom<Saved> for Config {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Config, Error> {
        Ok(Config {
            name: s.name.as_deref().map(Name::parse).transpose()?,
            gpus: s
                .gpus
                .map(|g| DeviceCount::from_int(g.into()))
                .transpose()?,
            gpu_memory: s.gpu_memory.as_deref().map(Capacity::parse).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{GPU_MEMORY_MAX, NAME_MAX};

    #[test]
    fn recorded_text_at_the_limit_round_trips() {
        let mut e: EnvRec = EnvRec::empty();
        let at = Config {
            name: Some(Name::parse(&format!("{}n", "é".repeat(NAME_MAX / 2))).unwrap()),
            gpus: Some(DeviceCount::parse("1").unwrap()),
            gpu_memory: Some(
                Capacity::parse(&format!("{}4g", "0".repeat(GPU_MEMORY_MAX - 2))).unwrap(),
            ),
        };
        at.record(&mut e);
        assert_eq!(Config::of(&e), at);
        Config::default().record(&mut e);
        assert_eq!(Config::of(&e), Config::default());
    }

    #[test]
    fn saved_values_follow_the_input_rules() {
        let saved = |json: &str| {
            Config::try_from(serde_json::from_str::<Saved>(json).unwrap())
                .map_err(|e| e.to_string())
        };
        let c = saved(r#"{"name": "n", "gpus": 2, "gpu_memory": "4g"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"name":"n","gpus":2,"gpu_memory":"4g"}"#
        );
        assert_eq!(
            saved(r#"{"gpus": 99}"#).unwrap_err(),
            DeviceCount::from_int(99).unwrap_err().to_string()
        );
        assert!(saved(r#"{"gpu_memory": "4x"}"#)
            .unwrap_err()
            .starts_with("invalid GPU memory '4x'"));
    }
}
