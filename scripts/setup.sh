#!/usr/bin/env bash
# Install everything clang-llm needs on a fresh Debian bookworm (or Ubuntu) machine:
# LLVM 22 from the distribution, csmith, cmake/make, a venv with the package and its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for p in clang-22 llvm-22 csmith libcsmith-dev cmake make ccache python3-venv; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
# torch: exactly the CPU wheel on disk, before anything else can pull another one.
.venv/bin/pip install -q "torch==2.13.0"
# The checkout on sys.path by a plain .pth line ("compat"): the default editable finder costs every
# start of the thin client ~12 ms of imports (pathlib, re, …). Setuptools versions without the
# mode get the default.
.venv/bin/pip install -q -e ".[train,dev,distributed]" --config-settings editable_mode=compat 2>/dev/null \
  || .venv/bin/pip install -q -e ".[train,dev,distributed]"
# The native front as clang-llm / clang++-llm: no Python start-up per compiler call (configure).
.venv/bin/clang-llm-tool front install >/dev/null
echo "clang-llm installed: $(.venv/bin/clang-llm --version | head -1)"
