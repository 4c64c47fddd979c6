#!/bin/sh
# What `make install PREFIX=…` tells the user: whether PREFIX/bin is on PATH (and the line that
# puts it there), and the shell-init line of each shell, with `genv` found on PATH.
set -eu
prefix=$(cd "$1" && pwd)
bin="$prefix/bin"
echo "Installed genv in $bin and its shim in $prefix/lib/genv."
case ":$PATH:" in
*":$bin:"*) echo "$bin is on your PATH." ;;
*)
    echo "$bin is not on your PATH: add it in your shell's rc file first:"
    echo "  export PATH=\"$bin:\$PATH\"    # ~/.bashrc, ~/.zshrc"
    echo "  fish_add_path $bin    # fish, once"
    ;;
esac
echo "Then add the shell integration (the genv function and tab completions) after it:"
echo '  eval "$(genv shell-init bash)"          # ~/.bashrc'
echo '  eval "$(genv shell-init zsh)"           # ~/.zshrc, after compinit'
echo '  genv shell-init fish | source           # ~/.config/fish/config.fish'
