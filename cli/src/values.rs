//! clap value parsers for the arguments genv checks itself.

use clap::builder::{OsStringValueParser, PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use genv_state::text::quote_os;
use genv_state::Error;
use std::ffi::OsStr;

/// A value one of genv's checks (an input rule of genv-state, a configuration field) made of
/// an argument while clap parsed: the typed value, or genv's refusal of it. The refusal waits
/// until clap's own checks have passed: a usage error (exit 2) is reported before a bad value
/// (exit 1), and of several bad values the one each command checks first, whatever their
/// order on the command line.
#[derive(Clone, Debug)]
pub struct Checked<T>(Result<T, Error>);

impl<T> Checked<T> {
    pub fn get(self) -> Result<T, Error> {
        self.0
    }

    /// An optional argument's value, refused or not.
    pub fn opt(v: Option<Checked<T>>) -> Result<Option<T>, Error> {
        v.map(Checked::get).transpose()
    }
}

/// The value parser for an argument that `check` checks (see [`Checked`]).
pub fn checked<T: Clone + Send + Sync + 'static>(
    check: fn(&OsStr) -> Result<T, Error>,
) -> impl TypedValueParser<Value = Checked<T>> {
    OsStringValueParser::new().map(move |s| Checked(check(&s)))
}

/// One of clap's value parsers, with a message naming the argument for a value that is not
/// UTF-8 (clap's own says only "invalid UTF-8 was detected").
#[derive(Clone)]
pub struct Utf8<P>(pub P);

impl<P: TypedValueParser> TypedValueParser for Utf8<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        if value.to_str().is_some() {
            return self.0.parse_ref(cmd, arg, value);
        }
        let name = arg.map_or_else(|| "argument".to_string(), |a| a.to_string());
        let mut msg = format!(
            "invalid value {} for '{name}': not valid UTF-8",
            quote_os(value)
        );
        if let Some(values) = self.0.possible_values() {
            let names: Vec<String> = values
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            msg += &format!(" [possible values: {}]", names.join(", "));
        }
        Err(cmd.clone().error(ErrorKind::InvalidValue, msg))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        self.0.possible_values()
    }
}
