//! `genv config`: prints or changes the configuration of the current environment, and saves
//! it to or loads it from the project's `.genv/`.

use crate::exit::Exit;
use crate::output::config_fields;
use crate::values::{checked, Checked};
use clap::ValueEnum;
use genv_state::text::quote_os;
use genv_state::{home, Caller, Capacity, Config, DeviceCount, Error, Genv, Input, Name};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// One of: gpus, gpu-memory, name (all fields when omitted)
    #[arg(value_parser = checked(Field::parse_os))]
    field: Option<Checked<Field>>,
    /// New value for the field (prints the field when omitted)
    #[arg(allow_hyphen_values = true)]
    value: Option<OsString>,
    /// Clear the field (or the whole configuration)
    #[arg(long)]
    clear: bool,
    /// Also save the configuration to the .genv/ directory
    #[arg(long)]
    save: bool,
    /// Load the configuration saved in the .genv/ directory
    #[arg(long)]
    load: bool,
    /// Print JSON: the whole configuration as an object, a field as its value (null if unset)
    #[arg(long)]
    json: bool,
    /// Print nothing (as the original genv's `config -q`)
    #[arg(short, long)]
    quiet: bool,
}

/// A configuration field, as `genv config <field>` names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Field {
    Gpus,
    #[value(alias = "gpu_memory")]
    GpuMemory,
    Name,
}

impl Field {
    fn parse_os(s: &OsStr) -> Result<Field, Error> {
        s.to_str()
            .and_then(|s| Field::from_str(s, false).ok())
            .ok_or_else(|| {
                let names: Vec<String> = Field::value_variants()
                    .iter()
                    .filter_map(|f| Some(f.to_possible_value()?.get_name().to_string()))
                    .collect();
                let (last, rest) = names.split_last().expect("there are fields");
                Error::Input(format!(
                    "unknown configuration field {}: use {} or {last}",
                    quote_os(s),
                    rest.join(", ")
                ))
            })
    }

    fn clear(self, c: &mut Config) {
        match self {
            Field::Gpus => c.gpus = None,
            Field::GpuMemory => c.gpu_memory = None,
            Field::Name => c.name = None,
        }
    }
}

/// A checked value for a configuration field.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    Gpus(DeviceCount),
    GpuMemory(Capacity),
    Name(Name),
}

impl Value {
    fn parse(field: Field, v: &OsStr) -> Result<Value, Error> {
        Ok(match field {
            Field::Gpus => Value::Gpus(DeviceCount::parse_os(v)?),
            Field::GpuMemory => Value::GpuMemory(Capacity::parse_os(v)?),
            Field::Name => Value::Name(Name::parse_os(v)?),
        })
    }

    fn set(self, c: &mut Config) {
        match self {
            Value::Gpus(g) => c.gpus = Some(g),
            Value::GpuMemory(m) => c.gpu_memory = Some(m),
            Value::Name(n) => c.name = Some(n),
        }
    }
}

/// What `genv config` was asked, checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    pub field: Option<Field>,
    /// Set when a value was given (never with `clear` or `load`).
    pub value: Option<Value>,
    pub clear: bool,
    pub save: bool,
    pub load: bool,
    pub json: bool,
    pub quiet: bool,
}

impl Args {
    pub fn check(self) -> Result<Request, Error> {
        let Args {
            field,
            value,
            clear,
            save,
            load,
            json,
            quiet,
        } = self;
        let field = Checked::opt(field)?;
        if clear && value.is_some() {
            return Err(Error::Input(
                "--clear takes no value: use `genv config <field> --clear`".into(),
            ));
        }
        if load && (clear || value.is_some() || field.is_some()) {
            return Err(Error::Input(
                "--load loads the whole saved configuration: use it alone (`genv config --load`)"
                    .into(),
            ));
        }
        let value = match (field, value) {
            (_, None) => None,
            (Some(f), Some(v)) => Some(Value::parse(f, &v)?),
            (None, Some(_)) => unreachable!("clap gives a value only after a field"),
        };
        Ok(Request {
            field,
            value,
            clear,
            save,
            load,
            json,
            quiet,
        })
    }
}

pub fn run(caller: &Caller, r: Request) -> Result<Exit, Error> {
    let eid = super::require_eid()?;
    let genv = Genv::open()?;
    let env = genv.env(&eid).ok_or_else(|| {
        Error::State(format!(
            "environment {eid} no longer exists; run `genv deactivate` and activate again"
        ))
    })?;
    let mut config = env.config.clone();
    let cwd = std::env::current_dir().ok();
    let find_home = || -> Result<PathBuf, Error> {
        cwd.as_deref().and_then(home::find_home).ok_or_else(|| {
            Error::Input(
                "no .genv directory here or in a parent directory, nor in ~: create one with `mkdir -p .genv`"
                    .into(),
            )
        })
    };
    if r.load {
        config = home::load(&find_home()?)?;
        genv.set_config(caller, &eid, &config)?;
        return Ok(Exit::Success);
    }
    let changed = r.clear || r.value.is_some();
    if r.clear {
        match r.field {
            None => config = Config::default(),
            Some(f) => f.clear(&mut config),
        }
    } else if let Some(v) = r.value {
        v.set(&mut config);
    }
    // Find the home before changing anything, so that `--save` without one changes nothing.
    let save_home = if r.save { Some(find_home()?) } else { None };
    if changed {
        genv.set_config(caller, &eid, &config)?;
    }
    if let Some(h) = save_home {
        home::save(&h, &config)?;
    }
    if !changed && !r.save && !r.quiet {
        show(&config, r.field, r.json);
    }
    Ok(Exit::Success)
}

fn show(c: &Config, field: Option<Field>, json: bool) {
    if json {
        let v = match field {
            None => serde_json::to_value(c).expect("serialises"),
            Some(Field::Gpus) => serde_json::json!(c.gpus),
            Some(Field::GpuMemory) => serde_json::json!(c.gpu_memory),
            Some(Field::Name) => serde_json::json!(c.name),
        };
        println!("{v}");
        return;
    }
    let Some(field) = field else {
        print!("{}", config_fields(c));
        return;
    };
    let shown = match field {
        Field::Gpus => c.gpus.map(|g| g.to_string()),
        Field::GpuMemory => c.gpu_memory.as_ref().map(Capacity::to_string),
        Field::Name => c.name.as_ref().map(Name::to_string),
    };
    if let Some(v) = shown {
        println!("{v}");
    }
}
