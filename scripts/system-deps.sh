#!/usr/bin/env bash
# System libraries the packages need and no package registry provides, installed when missing.
#
# Today one: libibverbs.so.1, which Mooncake's native library (specforge-mooncake) loads even for
# TCP transfers (no PyPI package ships the shared library). Quiet when nothing is missing; as root
# or with passwordless sudo it installs with apt-get and says so in one line; otherwise it stops
# with the exact command to run. `make demo` and `make test` run it before installing.
set -euo pipefail

missing=()
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)  # /sbin is not on every user's PATH
libs=$("$ldconfig" -p 2>/dev/null || true)  # read whole: grep -q on a pipe would SIGPIPE it under pipefail
have() { grep -qF "$1" <<<"$libs"; }
have libibverbs.so.1 || missing+=(libibverbs1)
[ ${#missing[@]} -eq 0 ] && exit 0

why="libibverbs.so.1 (Mooncake's native library loads it, even for TCP)"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing $why; install your distribution's package for it (Debian/Ubuntu: libibverbs1," \
       "Fedora/RHEL: libibverbs), then run make again" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "error: missing $why; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get: $why"
"${sudo[@]}" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
