#!/usr/bin/env bash
# Fetches stock nvidia-smi 535 (Debian non-free package `nvidia-smi`) into target/nvidia-smi/
# without installing it: installing would pull in the real driver libraries, and the tests want
# the unmodified binary talking to the simulated libnvidia-ml.so.1.
#
# The archive comes from the machine's own Debian apt configuration (no mirror is named here);
# apt runs on private lists, cache and sources, so the system's apt state is left untouched.
# Cached: does nothing when target/nvidia-smi/usr/bin/nvidia-smi exists.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/target/nvidia-smi"
bin="$dest/usr/bin/nvidia-smi"
work="$root/target/nvidia-smi.apt"
want_major=535

die() {
    echo "fetch-nvidia-smi: $*" >&2
    exit 1
}

if [ -x "$bin" ]; then
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (needs a Debian machine)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (needs a Debian machine)"

codename=""
if [ -r /etc/os-release ]; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
[ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release"

# Prints "uri<TAB>suite<TAB>signed-by" for every enabled `deb` entry of the machine's apt sources,
# from both the one-line (.list) and the deb822 (.sources) formats.
list_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            { sub(/#.*/, "") }
            $1 != "deb" { next }
            {
                i = 2; signed = ""
                if ($i ~ /^\[/) {
                    # Options in brackets: keep signed-by, skip the rest.
                    while (i <= NF) {
                        opt = $i; gsub(/[\[\]]/, "", opt)
                        if (opt ~ /^signed-by=/) { signed = substr(opt, 11) }
                        if ($i ~ /\]$/) { i++; break }
                        i++
                    }
                }
                if (i + 1 <= NF) print $i "\t" $(i + 1) "\t" signed
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            function flush(   n, m, a, b, j, k) {
                if (types ~ /(^| )deb( |$)/ && enabled !~ /^[Nn][Oo]$/) {
                    n = split(uris, a, " "); m = split(suites, b, " ")
                    for (j = 1; j <= n; j++) for (k = 1; k <= m; k++) print a[j] "\t" b[k] "\t" signed
                }
                types = uris = suites = signed = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[^ \t]/ {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "signed-by") signed = val
                else if (key == "enabled") enabled = val
            }
            END { flush() }' "$f"
    done
}

# Only the release's own suite (bookworm): other vendors' repositories have no non-free
# component, and -security/-updates move to newer 535 builds whose private NVML export table
# may differ from the one the simulated NVML serves (observed on the release's 535.261.03).
entries=$(list_sources | awk -F '\t' -v c="$codename" '$2 == c' | sort -u)
[ -n "$entries" ] || die "no Debian '$codename' entry in /etc/apt/sources.list{,.d}"

rm -rf "$work"
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
: >"$work/sources.list"
{
    while IFS=$'\t' read -r uri suite signed; do
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: $suite"
        echo "Components: non-free non-free-firmware"
        [ -z "$signed" ] || echo "Signed-By: $signed"
        echo
    done <<<"$entries"
} >"$work/sources.list.d/genv-nonfree.sources"

apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=$work/sources.list.d"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    # The private directories belong to the caller; apt's _apt sandbox user may not reach them.
    -o "APT::Sandbox::User=$(id -un)"
)

if ! apt-get "${apt_opts[@]}" -q update >"$work/update.log" 2>&1; then
    die "apt-get update on the private non-free sources failed (see $work/update.log)"
fi
version=$(apt-cache "${apt_opts[@]}" policy nvidia-smi | awk '/Candidate:/ { print $2 }')
case "$version" in
"" | "(none)") die "no nvidia-smi package in the '$codename' non-free archive" ;;
"$want_major".*) ;;
*) die "nvidia-smi candidate is $version, not $want_major.x" ;;
esac
if ! (cd "$work/deb" && apt-get "${apt_opts[@]}" -q download "nvidia-smi=$version" >"$work/download.log" 2>&1); then
    die "apt-get download nvidia-smi=$version failed (see $work/download.log)"
fi
deb=$(ls "$work/deb"/nvidia-smi_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "apt-get download left no nvidia-smi .deb"
got=$(dpkg-deb -f "$deb" Version)
case "$got" in
"$want_major".*) ;;
*) die "downloaded nvidia-smi $got, not $want_major.x" ;;
esac

# Extract into a scratch dir first so a failed run never leaves a half-made cache behind.
rm -rf "$dest.tmp"
dpkg-deb -x "$deb" "$dest.tmp" || die "dpkg-deb -x $deb failed"
# Debian installs the binary under usr/lib/nvidia/current and points usr/bin at it through
# update-alternatives; do the same with a plain relative link.
if [ ! -e "$dest.tmp/usr/bin/nvidia-smi" ]; then
    real=$(cd "$dest.tmp" && find usr/lib -type f -name nvidia-smi -perm -u+x | head -n1)
    [ -n "$real" ] || die "$deb has no nvidia-smi binary"
    mkdir -p "$dest.tmp/usr/bin"
    ln -s "../${real#usr/}" "$dest.tmp/usr/bin/nvidia-smi"
fi
[ -x "$dest.tmp/usr/bin/nvidia-smi" ] || die "$deb has no runnable usr/bin/nvidia-smi"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
rm -rf "$work"
echo "fetch-nvidia-smi: nvidia-smi $got in $dest/usr/bin"
