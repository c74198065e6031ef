#!/bin/sh
# Installs the agent-os binary from a GitHub release (docs/deploy.md#install-a-release).
#
#   curl -fsSL https://github.com/agent-os/agent-os/releases/latest/download/install.sh | sh
#   sh scripts/install.sh
#
# It finds this machine's build, downloads it with the release's SHA256SUMS, refuses it unless
# its checksum matches, and puts agent-os in ~/.local/bin. Settings, all optional:
#   AGENT_OS_VERSION           a release such as 0.2.0 (default: the latest)
#   AGENT_OS_INSTALL_DIR       where the binary goes (default: ~/.local/bin)
#   AGENT_OS_INSTALL_BASE_URL  where releases are (default: the project's GitHub releases);
#                              files are BASE/download/vVERSION/FILE, or BASE/latest/download/FILE
set -eu

REPOSITORY="agent-os/agent-os"
BASE_URL="${AGENT_OS_INSTALL_BASE_URL:-https://github.com/$REPOSITORY/releases}"
BASE_URL="${BASE_URL%/}"
VERSION="${AGENT_OS_VERSION:-}"
VERSION="${VERSION#v}"
INSTALL_DIR="${AGENT_OS_INSTALL_DIR:-${HOME:-}/.local/bin}"

say() { printf 'agent-os install: %s\n' "$*"; }
fail() {
    printf 'agent-os install: error: %s\n' "$*" >&2
    exit 1
}

# The release target of this machine, as the release names its files.
detect_target() {
    os=$(uname -s)
    arch=$(uname -m)
    case "$arch" in
        x86_64 | amd64) arch=x86_64 ;;
        aarch64 | arm64) arch=aarch64 ;;
        *) fail "no release is built for the processor $arch; build from source: cargo build --release -p agent-os" ;;
    esac
    case "$os" in
        Linux) echo "$arch-unknown-linux-gnu" ;;
        Darwin) echo "$arch-apple-darwin" ;;
        *) fail "no release is built for $os; build from source: cargo build --release -p agent-os" ;;
    esac
}

# download URL FILE: fetch URL into FILE, failing on an HTTP error.
download() {
    if command -v curl >/dev/null 2>&1; then
        curl --proto '=https,http' -fsSL -o "$2" "$1" || fail "could not download $1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1" || fail "could not download $1"
    else
        fail "neither curl nor wget is installed; install one of them and run this again"
    fi
}

# sha256 FILE: the file's SHA-256 in hex.
sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        fail "neither sha256sum nor shasum is installed, so the download cannot be checked"
    fi
}

[ -n "$INSTALL_DIR" ] || fail "HOME is not set; set AGENT_OS_INSTALL_DIR to where agent-os should go"
target=$(detect_target)
if [ -n "$VERSION" ]; then
    release="$BASE_URL/download/v$VERSION"
else
    release="$BASE_URL/latest/download"
fi

work=$(mktemp -d 2>/dev/null || mktemp -d -t agent-os-install)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "looking for $target in $release"
download "$release/SHA256SUMS" "$work/SHA256SUMS"
# A line of SHA256SUMS is "HASH  FILE" (or "HASH *FILE"); this machine's file is
# agent-os-VERSION-TARGET.tar.gz.
want=""
[ -z "$VERSION" ] || want="agent-os-$VERSION-$target.tar.gz"
line=$(awk -v want="$want" -v suffix="-$target.tar.gz" '
    { name = $2; sub(/^\*/, "", name) }
    name !~ /^[A-Za-z0-9._+-]+$/ { next }
    want != "" && name == want { print $1, name; exit }
    want == "" && index(name, "agent-os-") == 1 && length(name) > length(suffix) &&
        substr(name, length(name) - length(suffix) + 1) == suffix { print $1, name; exit }
' "$work/SHA256SUMS")
[ -n "$line" ] || fail "the release at $release has no build for $target (SHA256SUMS lists none)"
expected="${line%% *}"
file="${line#* }"
name="${file%.tar.gz}"

say "downloading $file"
download "$release/$file" "$work/$file"
actual=$(sha256 "$work/$file")
if [ "$actual" != "$expected" ]; then
    fail "checksum mismatch for $file: SHA256SUMS says $expected, the download is $actual. Nothing was installed. The file was damaged or changed on the way; try again, and if it persists, do not use this download."
fi
say "checksum verified ($expected)"

mkdir -p "$work/unpacked"
tar -xzf "$work/$file" -C "$work/unpacked" || fail "could not unpack $file"
binary="$work/unpacked/$name/agent-os"
[ -f "$binary" ] || fail "$file holds no $name/agent-os"

mkdir -p "$INSTALL_DIR" || fail "cannot create $INSTALL_DIR; set AGENT_OS_INSTALL_DIR to a directory you can write"
# Copied beside its final name, then renamed: a running agent-os is never half overwritten.
cp "$binary" "$INSTALL_DIR/.agent-os.new" || fail "cannot write to $INSTALL_DIR; set AGENT_OS_INSTALL_DIR to a directory you can write"
chmod 0755 "$INSTALL_DIR/.agent-os.new"
mv -f "$INSTALL_DIR/.agent-os.new" "$INSTALL_DIR/agent-os"

installed=$("$INSTALL_DIR/agent-os" --version) || fail "$INSTALL_DIR/agent-os was installed but does not run on this machine"
say "installed $installed to $INSTALL_DIR/agent-os"
case ":${PATH:-}:" in
    *":$INSTALL_DIR:"*) ;;
    *)
        say "$INSTALL_DIR is not on your PATH; add it, e.g. in ~/.profile, ~/.bashrc or ~/.zshrc:"
        printf '\n    export PATH="%s:$PATH"\n\n' "$INSTALL_DIR"
        ;;
esac
