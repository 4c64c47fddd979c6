#!/usr/bin/env bash
# Fetches stock nvidia-smi and its libnvidia-ml of every measured driver generation from
# Debian's non-free archive, without installing them: installing would pull in the real driver,
# and the tests want the unmodified binaries talking to the simulated libnvidia-ml.so.1 (the
# real libraries are kept to check the shim's table of generations against them).
#
#   470  nvidia-tesla-470-smi, libnvidia-tesla-470-ml1   bookworm     -> target/nvidia-smi-470/
#   525  nvidia-tesla-smi, libnvidia-tesla-ml1           bookworm     -> target/nvidia-smi-525/
#   535  nvidia-smi, libnvidia-ml1                       bookworm     -> target/nvidia-smi/
#   550  nvidia-smi, libnvidia-ml1                       trixie       -> target/nvidia-smi-550/
#   555  nvidia-smi, libnvidia-ml1                       experimental -> target/nvidia-smi-555/
#
# (target/nvidia-smi-535 links to target/nvidia-smi, where 535 always was.) The archive is the
# one the machine's own Debian apt configuration names (no mirror is named here), with the
# suites above; apt runs on private lists, cache and sources, so the system's apt state is left
# untouched. Cached: a generation whose binary and library are there is not fetched again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target="$root/target"
work="$target/nvidia-smi.apt"

# major  smi package  library package  suite
builds="470 nvidia-tesla-470-smi libnvidia-tesla-470-ml1 bookworm
525 nvidia-tesla-smi libnvidia-tesla-ml1 bookworm
535 nvidia-smi libnvidia-ml1 bookworm
550 nvidia-smi libnvidia-ml1 trixie
555 nvidia-smi libnvidia-ml1 experimental"

die() {
    echo "fetch-nvidia-smi: $*" >&2
    exit 1
}

dest_of() {
    if [ "$1" = 535 ]; then echo "$target/nvidia-smi"; else echo "$target/nvidia-smi-$1"; fi
}

have() {
    local d
    d=$(dest_of "$1")
    [ -x "$d/usr/bin/nvidia-smi" ] && [ -n "$(find "$d/usr/lib" -name 'libnvidia-ml.so.*' -type f 2>/dev/null | head -n1)" ]
}

missing=()
while read -r major _; do
    have "$major" || missing+=("$major")
done <<<"$builds"
mkdir -p "$target"
ln -sfn nvidia-smi "$target/nvidia-smi-535"
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (needs a Debian machine)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (needs a Debian machine)"

codename=""
if [ -r /etc/os-release ]; then
    # shellcheck source=/dev/null
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

# The Debian archive is where the release's own suite comes from (other vendors' repositories
# have no non-free component; -security and -updates live elsewhere or move to newer builds).
entries=$(list_sources | awk -F '\t' -v c="$codename" '$2 == c { print $1 "\t" $3 }' | sort -u)
[ -n "$entries" ] || die "no Debian '$codename' entry in /etc/apt/sources.list{,.d}"
suites=$(awk '{ print $4 }' <<<"$builds" | sort -u | tr '\n' ' ')

rm -rf "$work"
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
: >"$work/sources.list"
{
    while IFS=$'\t' read -r uri signed; do
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: $suites"
        echo "Components: non-free"
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

# The version of package $1 in suite $2 (the newest there), checked to be of major $3.
version_in() {
    local v
    v=$(apt-cache "${apt_opts[@]}" madison "$1" | awk -F '|' -v s="$2" '
        { gsub(/ /, "", $2) }
        $3 ~ (" " s "/non-free ") { print $2; exit }')
    [ -n "$v" ] || die "no $1 in the '$2' non-free archive"
    case "$v" in
    "$3".*) ;;
    *) die "$1 in '$2' is $v, not $3.x" ;;
    esac
    echo "$v"
}

for major in "${missing[@]}"; do
    read -r _ smi lib suite <<<"$(awk -v m="$major" '$1 == m' <<<"$builds")"
    rm -rf "$work/deb" && mkdir -p "$work/deb"
    debs=()
    for pkg in "$smi" "$lib"; do
        v=$(version_in "$pkg" "$suite" "$major")
        if ! (cd "$work/deb" && apt-get "${apt_opts[@]}" -q download "$pkg=$v" >>"$work/download.log" 2>&1); then
            die "apt-get download $pkg=$v failed (see $work/download.log)"
        fi
        deb=$(find "$work/deb" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
        [ -n "$deb" ] || die "apt-get download left no $pkg .deb"
        debs+=("$deb")
    done
    dest=$(dest_of "$major")
    # Extract into a scratch dir first so a failed run never leaves a half-made cache behind.
    rm -rf "$dest.tmp"
    for deb in "${debs[@]}"; do
        dpkg-deb -x "$deb" "$dest.tmp" || die "dpkg-deb -x $deb failed"
    done
    # Debian installs the binary under usr/lib/nvidia/<flavour> and points usr/bin at it through
    # update-alternatives; do the same with a plain relative link.
    if [ ! -e "$dest.tmp/usr/bin/nvidia-smi" ]; then
        real=$(cd "$dest.tmp" && find usr/lib -type f -name nvidia-smi -perm -u+x | head -n1)
        [ -n "$real" ] || die "${debs[0]} has no nvidia-smi binary"
        mkdir -p "$dest.tmp/usr/bin"
        ln -s "../${real#usr/}" "$dest.tmp/usr/bin/nvidia-smi"
    fi
    [ -x "$dest.tmp/usr/bin/nvidia-smi" ] || die "${debs[0]} has no runnable usr/bin/nvidia-smi"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "fetch-nvidia-smi: nvidia-smi $(dpkg-deb -f "${debs[0]}" Version) in ${dest#"$root"/}/usr/bin"
done
rm -rf "$work"
