//! Shell integration: the function users put in their rc file, and the code `activate` /
//! `deactivate` print for it to eval. Everything the shell had before activation is saved in
//! GENV__SAVED_* variables and restored exactly (set, empty or unset) by `deactivate`.

use crate::exit::Exit;
use crate::values::Utf8;
use clap::builder::EnumValueParser;
use clap::ValueEnum;
use genv_state::text::quote_path;
use genv_state::{Config, Error};
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
pub fn fq(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

fn prompt_tag(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("(genv:{n}) "),
        None => "(genv) ".to_string(),
    }
}

/// The variables scripts read in an environment, with the original genv's names
/// (`torchrun --nproc_per_node=$GENV_GPUS`): each configured field's value, or unset.
pub fn config_vars(c: &Config) -> [(&'static str, Option<String>); 3] {
    [
        (
            "GENV_ENVIRONMENT_NAME",
            c.name.as_ref().map(|n| n.to_string()),
        ),
        ("GENV_GPUS", c.gpus.map(|g| g.to_string())),
        (
            "GENV_GPU_MEMORY",
            c.gpu_memory.as_ref().map(|m| m.to_string()),
        ),
    ]
}

/// The code that sets (or unsets) [`config_vars`] in the shell.
pub fn config_vars_code(d: Dialect, c: &Config) -> String {
    let mut s = String::new();
    for (k, v) in config_vars(c) {
        s += &match (d, v) {
            (Dialect::Fish, Some(v)) => format!("set -gx {k} {}\n", fq(&v)),
            (Dialect::Fish, None) => format!("set -e {k}\n"),
            (_, Some(v)) => format!("export {k}={}\n", sq(&v)),
            (_, None) => format!("unset {k}\n"),
        };
    }
    s
}

/// Code that prints `text` on the shell's stdout: help asked for through the shell function,
/// which evals what genv prints, reaches the user's stdout (`genv activate --help | less`).
pub fn print_code(d: Dialect, text: &str) -> String {
    match d {
        Dialect::Fish => format!("printf '%s' {}\n", fq(text)),
        Dialect::Bash | Dialect::Zsh => format!("printf '%s' {}\n", sq(text)),
    }
}

pub fn activate_code(
    d: Dialect,
    eid: &str,
    shim: &std::path::Path,
    config: &Config,
    member: Option<&str>,
    prompt: bool,
) -> String {
    let shim = shim.display().to_string();
    let name = config.name.as_ref().map(|n| n.to_string());
    let tag = prompt_tag(name.as_deref());
    let vars = config_vars_code(d, config);
    match d {
        Dialect::Bash | Dialect::Zsh => {
            let mut s = vars;
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
            let mut s = vars;
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
            "unset GENV_ENVIRONMENT_ID GENV_SHIM_PATH GENV_MEMBER GENV_ENVIRONMENT_NAME GENV_GPUS GENV_GPU_MEMORY\n",
        )
        .to_string(),
        Dialect::Fish => concat!(
            "if set -q GENV__SAVED_LD_PRELOAD; set -gx LD_PRELOAD $GENV__SAVED_LD_PRELOAD; set -e GENV__SAVED_LD_PRELOAD; else; set -e LD_PRELOAD; end\n",
            "if set -q GENV__PROMPT; functions -e fish_prompt; if functions -q __genv_saved_fish_prompt; functions -c __genv_saved_fish_prompt fish_prompt; functions -e __genv_saved_fish_prompt; end; set -e GENV__PROMPT; end\n",
            "set -e GENV_ENVIRONMENT_ID; set -e GENV_SHIM_PATH; set -e GENV_MEMBER; set -e GENV_ENVIRONMENT_NAME; set -e GENV_GPUS; set -e GENV_GPU_MEMORY\n",
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

/// What `genv shell-init` prints: the function for the user's rc file, the completions of
/// every command (unless `completions` is false) and the original genv's `GENV_PREACTIVATE`.
/// The function runs the genv binary that printed it; for activate/deactivate it evals what
/// genv prints and returns genv's own exit status; after `config` and `attach` (which may
/// change the configuration) it refreshes `GENV_GPUS` and the like ([`config_vars`]).
pub fn init_code(shell: Dialect, completions: Option<&str>) -> Result<String, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::State(format!("cannot locate the genv binary: {e}")))?;
    let exe = exe.display().to_string();
    let mut code = match shell {
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
        case config attach
            {exe} $argv
            set -l __genv_rc $status
            if test $__genv_rc -eq 0; and test -n "$GENV_ENVIRONMENT_ID"
                set -l __genv_code ({exe} shell-vars fish 2>/dev/null | string collect)
                test -n "$__genv_code"; and eval $__genv_code
            end
            return $__genv_rc
        case '*'
            {exe} $argv
    end
end
if test "$GENV_PREACTIVATE" = 1; and test -z "$GENV_ENVIRONMENT_ID"
    set -l __genv_args activate
    test "$GENV_PREACTIVATE_PROMPT" = 0; and set -a __genv_args --no-prompt
    test -n "$GENV_PREACTIVATE_GPUS"; and set -a __genv_args --gpus $GENV_PREACTIVATE_GPUS
    test -n "$GENV_PREACTIVATE_GPU_MEMORY"; and set -a __genv_args --gpu-memory $GENV_PREACTIVATE_GPU_MEMORY
    test -n "$GENV_PREACTIVATE_ENVIRONMENT_NAME"; and set -a __genv_args --name $GENV_PREACTIVATE_ENVIRONMENT_NAME
    genv $__genv_args
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
        config|attach)
            local __genv_rc
            command {exe} "$@"
            __genv_rc=$?
            if [ $__genv_rc -eq 0 ] && [ -n "${{GENV_ENVIRONMENT_ID-}}" ]; then eval "$(command {exe} shell-vars {dialect} 2>/dev/null)"; fi
            return $__genv_rc
            ;;
        *)
            command {exe} "$@"
            ;;
    esac
}}
if [ "${{GENV_PREACTIVATE-}}" = 1 ] && [ -z "${{GENV_ENVIRONMENT_ID-}}" ]; then
    __genv_preactivate() {{
        local __genv_args
        __genv_args=(activate)
        if [ "${{GENV_PREACTIVATE_PROMPT-}}" = 0 ]; then __genv_args+=(--no-prompt); fi
        if [ -n "${{GENV_PREACTIVATE_GPUS-}}" ]; then __genv_args+=(--gpus "$GENV_PREACTIVATE_GPUS"); fi
        if [ -n "${{GENV_PREACTIVATE_GPU_MEMORY-}}" ]; then __genv_args+=(--gpu-memory "$GENV_PREACTIVATE_GPU_MEMORY"); fi
        if [ -n "${{GENV_PREACTIVATE_ENVIRONMENT_NAME-}}" ]; then __genv_args+=(--name "$GENV_PREACTIVATE_ENVIRONMENT_NAME"); fi
        genv "${{__genv_args[@]}}"
    }}
    __genv_preactivate
    unset -f __genv_preactivate
fi
"#,
            exe = sq(&exe),
            pid = own_pid(shell),
            detached = Exit::ACTIVE_DETACHED,
            dialect = shell
                .to_possible_value()
                .expect("no dialect is skipped")
                .get_name()
        ),
    };
    if let Some(c) = completions {
        code += &match shell {
            // compdef exists once the user's compinit ran (before this line in ~/.zshrc).
            Dialect::Zsh => format!("if (( $+functions[compdef] )); then\n{c}\nfi\n"),
            _ => c.to_string(),
        };
    }
    Ok(code)
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
