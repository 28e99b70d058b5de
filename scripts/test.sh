#!/usr/bin/env bash
# The project's test command: unit, integration (real clang/opt) and end-to-end (real projects).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
