#!/usr/bin/env bash
# Rebuild the IR corpus from Debian sources and csmith seeds (resumable: built packages are
# skipped; rerun to continue). Needs root for apt (deb-src lines are added if missing).
#
#   bash scripts/corpus.sh                 # everything under $CORPUS (default /work/corpus)
#   RETRY=1 bash scripts/corpus.sh         # rebuild packages whose build failed before
#   PACKAGES=0 bash scripts/corpus.sh      # only the committed recordings + csmith: the corpus of
#                                          # data/corpus-index-v2.jsonl.gz, checked id for id
#
# Then: $CORPUS/out/index.jsonl.gz + $CORPUS/out/modules/<id>.bc, the layout every labelling,
# training and evaluation command reads.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-/work/corpus}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
fi
$SUDO apt-get update -q
# What the recipes' own build systems need besides the compiler.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q autoconf automake libtool texinfo bison flex \
  libmd-dev gettext autopoint pkg-config meson ninja-build m4 gperf help2man libltdl-dev csmith libcsmith-dev
export PATH="$PWD/.venv/bin:$PATH"
# Packages recorded by an earlier machine (committed with their .done files) are not built again.
if [ -f data/corpus-record.tar.xz ] && [ ! -e "$CORPUS/record/.restored" ]; then
  mkdir -p "$CORPUS/record"
  tar -xJf data/corpus-record.tar.xz -C "$CORPUS/record"
  touch "$CORPUS/record/.restored"
fi
retry=(); [ -n "${RETRY:-}" ] && retry=(--retry-failed)
if [ "${PACKAGES:-1}" != 0 ]; then  # PACKAGES=0: exactly the committed recordings, nothing built
  .venv/bin/clang-llm-tool corpus packages --fetch "${retry[@]}" --src "$CORPUS/src" \
    --record "$CORPUS/record" --logs "$CORPUS/logs"
  expect=()
else
  expect=(--expect data/corpus-index-v2.jsonl.gz)  # the corpus the v2 labels were made on
fi
.venv/bin/clang-llm-tool corpus csmith --out "$CORPUS/record/csmith" -n 2500
.venv/bin/clang-llm-tool corpus index --out "$CORPUS/out" --record "$CORPUS/record" "${expect[@]}"
