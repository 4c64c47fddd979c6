//! Shell integration: the function users put in their rc file, and the code `activate` /
//! `deactivate` print for it to eval. Everything the shell had before activation is saved in
//! GENV__SAVED_* variables and restored exactly (set, empty or unset) by `deactivate`.

use crate::exit::Exit;
use crate::values::Utf8;
use clap::builder::EnumValueParser;
use clap::ValueEnum;
use genv_state::text::quote_path;
use genv_state::Error;
use std::path::PathBuf;

/// The shells genv prints code for (bash and zsh read the same POSIX code).
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Dialect {
    Bash,
    Zsh,
    Fish,
}

/// The arguments the shell integration adds to `activate` and `deactivate`.
#[derive(clap::Args, Clone, Debug)]
pub struct ShellArgs {
    /// Shell dialect to print code for (set by the shell integration).
    #[arg(long, hide = true, value_parser = Utf8(EnumValueParser::<Dialect>::new()))]
    shell: Option<Dialect>,
    /// The pid of the interactive shell (set by the shell integration).
    #[arg(long, hide = true, value_parser = Utf8(clap::value_parser!(u32)))]
    shell_pid: Option<u32>,
}

/// A command run by the shell integration: the code it prints is evaluated by this shell.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ShellCall {
    pub dialect: Dialect,
    pub pid: u32,
}

impl ShellArgs {
    /// The shell that runs `genv <what>`; without one, the way to set up the integration.
    pub fn check(self, what: &str) -> Result<ShellCall, Error> {
        match (self.shell, self.shell_pid) {
            (Some(dialect), Some(pid)) => Ok(ShellCall { dialect, pid }),
            _ => Err(Error::Input(format!(
                "`genv {what}` changes your shell, so it runs through the shell integration: add \
                 `eval \"$(genv shell-init bash)\"` to ~/.bashrc (zsh: shell-init zsh; fish: \
                 `genv shell-init fish | source`), or run one command with `genv exec`"
            ))),
        }
    }
}

/// The shim next to this genv: `GENV_SHIM_PATH`, else `<bin>/libgenv_shim.so`, else
/// `<bin>/../lib/genv/libgenv_shim.so` (the layout of `make install`).
pub fn shim_path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("GENV_SHIM_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Input(format!(
                "GENV_SHIM_PATH={} is not a file: point it at libgenv_shim.so",
                quote_path(&p)
            )))
        };
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::State(format!("cannot locate the genv binary: {e}")))?;
    let dir = exe.parent().unwrap_or(std::path::Path::new("/"));
    let cands = [
        dir.join("libgenv_shim.so"),
        dir.join("../lib/genv/libgenv_shim.so"),
    ];
    for c in &cands {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    Err(Error::State(format!(
        "cannot find libgenv_shim.so (looked in {} and {}); reinstall genv or set GENV_SHIM_PATH",
        quote_path(&cands[0]),
        quote_path(&cands[1])
    )))
}

/// Quotes for POSIX shells: '…' with ' written as '\''.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes for fish: '…' with \ and ' escaped.
fn fq(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

fn prompt_tag(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("(genv:{n}) "),
        None => "(genv) ".to_string(),
    }
}

pub fn activate_code(
    d: Dialect,
    eid: &str,
    shim: &std::path::Path,
    name: Option<&str>,
    member: Option<&str>,
    prompt: bool,
) -> String {
    let shim = shim.display().to_string();
    let tag = prompt_tag(name);
    match d {
        Dialect::Bash | Dialect::Zsh => {
            let mut s = String::new();
            s += "if [ -n \"${LD_PRELOAD+x}\" ]; then export GENV__SAVED_LD_PRELOAD=\"$LD_PRELOAD\"; fi\n";
            s += &format!(
                "export LD_PRELOAD={}\"${{LD_PRELOAD:+:$LD_PRELOAD}}\"\n",
                sq(&shim)
            );
            s += &format!("export GENV_ENVIRONMENT_ID={}\n", sq(eid));
            s += &format!("export GENV_SHIM_PATH={}\n", sq(&shim));
            // What makes the shell's programs members (the shell itself is one by its pid).
            match member {
                Some(m) => s += &format!("export GENV_MEMBER={}\n", sq(m)),
                None => s += "unset GENV_MEMBER\n",
            }
            if prompt {
                s += "if [ -n \"${PS1+x}\" ]; then GENV__SAVED_PS1=\"$PS1\"; fi\n";
                s += &format!("GENV__PROMPT=1; PS1={}\"${{PS1-}}\"\n", sq(&tag));
            }
            s
        }
        Dialect::Fish => {
            let mut s = String::new();
            s += "if set -q LD_PRELOAD; set -gx GENV__SAVED_LD_PRELOAD $LD_PRELOAD; set -gx LD_PRELOAD ";
            s += &format!(
                "{}\":$LD_PRELOAD\"; else; set -gx LD_PRELOAD {}; end\n",
                fq(&shim),
                fq(&shim)
            );
            s += &format!("set -gx GENV_ENVIRONMENT_ID {}\n", fq(eid));
            s += &format!("set -gx GENV_SHIM_PATH {}\n", fq(&shim));
            match member {
                Some(m) => s += &format!("set -gx GENV_MEMBER {}\n", fq(m)),
                None => s += "set -e GENV_MEMBER\n",
            }
            if prompt {
                s += "if functions -q fish_prompt; functions -c fish_prompt __genv_saved_fish_prompt; end\n";
                s += &format!(
                    "set -g GENV__PROMPT 1; function fish_prompt; printf '%s' {}; if functions -q __genv_saved_fish_prompt; __genv_saved_fish_prompt; end; end\n",
                    fq(&tag)
                );
            }
            s
        }
    }
}

pub fn deactivate_code(d: Dialect) -> String {
    match d {
        Dialect::Bash | Dialect::Zsh => concat!(
            "if [ -n \"${GENV__SAVED_LD_PRELOAD+x}\" ]; then export LD_PRELOAD=\"$GENV__SAVED_LD_PRELOAD\"; unset GENV__SAVED_LD_PRELOAD; else unset LD_PRELOAD; fi\n",
            "if [ -n \"${GENV__PROMPT+x}\" ]; then if [ -n \"${GENV__SAVED_PS1+x}\" ]; then PS1=\"$GENV__SAVED_PS1\"; unset GENV__SAVED_PS1; else unset PS1; fi; unset GENV__PROMPT; fi\n",
            "unset GENV_ENVIRONMENT_ID GENV_SHIM_PATH GENV_MEMBER\n",
        )
        .to_string(),
        Dialect::Fish => concat!(
            "if set -q GENV__SAVED_LD_PRELOAD; set -gx LD_PRELOAD $GENV__SAVED_LD_PRELOAD; set -e GENV__SAVED_LD_PRELOAD; else; set -e LD_PRELOAD; end\n",
            "if set -q GENV__PROMPT; functions -e fish_prompt; if functions -q __genv_saved_fish_prompt; functions -c __genv_saved_fish_prompt fish_prompt; functions -e __genv_saved_fish_prompt; end; set -e GENV__PROMPT; end\n",
            "set -e GENV_ENVIRONMENT_ID; set -e GENV_SHIM_PATH; set -e GENV_MEMBER\n",
        )
        .to_string(),
    }
}

/// Code that sets `__genv_pid` to the pid of the shell process running it. `$$` is the main
/// shell's pid also in a subshell `( … )`, a pipeline element or a command substitution, which
/// would give the subshell's activation to its parent (the parent could not deactivate it and
/// would join it later); an activation belongs to the process that evals the code, and ends
/// with it. bash: `$BASHPID`. zsh: `sysparams[pid]` (zsh/system), else the first field of
/// `/proc/self/stat` read by the `read` builtin, i.e. by the shell process itself. (fish runs
/// command substitutions and functions in pipelines in-process: `$fish_pid` is right there.)
fn own_pid(shell: Dialect) -> &'static str {
    match shell {
        Dialect::Bash => "__genv_pid=$BASHPID",
        Dialect::Zsh => {
            "if zmodload -F zsh/system p:sysparams 2>/dev/null; then __genv_pid=${sysparams[pid]}; else read -r __genv_pid __genv_rest </proc/self/stat; fi"
        }
        Dialect::Fish => "",
    }
}

/// The function for the user's rc file. It runs the genv binary that printed it; for
/// activate/deactivate it evals what genv prints and returns genv's own exit status.
pub fn init_code(shell: Dialect) -> Result<String, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::State(format!("cannot locate the genv binary: {e}")))?;
    let exe = exe.display().to_string();
    Ok(match shell {
        Dialect::Fish => format!(
            r#"function genv --description 'GPU environments'
    switch "$argv[1]"
        case activate deactivate
            set -l __genv_code ({exe} $argv --shell fish --shell-pid $fish_pid | string collect)
            set -l __genv_rc $pipestatus[1]
            if contains -- $__genv_rc 0 {detached}; and test -n "$__genv_code"
                eval $__genv_code
            end
            return $__genv_rc
        case '*'
            {exe} $argv
    end
end
"#,
            exe = fq(&exe),
            detached = Exit::ACTIVE_DETACHED,
        ),
        Dialect::Bash | Dialect::Zsh => format!(
            r#"genv() {{
    case "${{1-}}" in
        activate|deactivate)
            local __genv_code __genv_rc __genv_pid __genv_rest
            {pid}
            __genv_code="$(command {exe} "$@" --shell {dialect} --shell-pid "$__genv_pid")"
            __genv_rc=$?
            if {{ [ $__genv_rc -eq 0 ] || [ $__genv_rc -eq {detached} ]; }} && [ -n "$__genv_code" ]; then eval "$__genv_code"; fi
            return $__genv_rc
            ;;
        *)
            command {exe} "$@"
            ;;
    esac
}}
"#,
            exe = sq(&exe),
            pid = own_pid(shell),
            detached = Exit::ACTIVE_DETACHED,
            dialect = shell
                .to_possible_value()
                .expect("no dialect is skipped")
                .get_name()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sq("a'b"), r"'a'\''b'");
        assert_eq!(fq(r"a'b\c"), r"'a\'b\\c'");
    }
}
