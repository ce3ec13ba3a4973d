#!/usr/bin/env bash
# Installs everything blockfs needs to build and to run its tests on Debian 12 (as root).
#
#   contrib/install-deps.sh
#
# Idempotent: packages already installed are left alone, and apt-get is only
# called when something is missing. Exits non-zero, saying what failed, if
# anything cannot be installed.
set -euo pipefail

build_pkgs=(
  meson ninja-build pkg-config gcc clang clang-format
  libclang-rt-dev
  libfuse3-dev fuse3 libssl-dev
  librocksdb-dev libsodium-dev libzmq3-dev
  libjerasure-dev libgf-complete-dev
  libxxhash-dev libcbor-dev libinih-dev libjansson-dev libssl-dev
)
test_pkgs=(
  python3 python3-pytest python3-pytest-timeout python3-zmq
  rsync sqlite3 attr acl git tar coreutils psmisc util-linux mount procps
  iptables strace e2fsprogs
)

die() { echo "install-deps: $*" >&2; exit 1; }

# The interop tests run the reference IPFS libraries (tests/interop,
# Node 20). A machine image that already has node (e.g. from NodeSource)
# keeps it: Debian's nodejs would replace it with 18.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  test_pkgs+=(nodejs npm)
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install); try: sudo $0"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12"

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || die "apt-get install failed for: ${missing[*]}"

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: warning: node $(node --version 2>/dev/null || echo missing) is older than the 20 tests/interop was tested with" >&2
fi

# FUSE needs its device; on a machine without the module loaded, try to load it.
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || echo "install-deps: warning: /dev/fuse is missing (no FUSE kernel module?)" >&2
fi
echo "install-deps: done"
