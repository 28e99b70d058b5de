#!/usr/bin/env bash
# Set up (idempotent), then build the bundled example with CC=clang-llm and print sizes against -Oz.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/clang-llm-tool demo "$@"
