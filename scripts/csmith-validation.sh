#!/usr/bin/env bash
# The csmith validation slice: programs of seeds 1,000,000 .. 1,000,399 (never train or test;
# see clang_llm/train/csmith.py), indexed, less any module the v2 index already holds (a tiny
# program two seeds share), and every stored list of the v2 pool measured on each (pool sweep).
# Why: the package validation split has no csmith, so a setting that suits csmith modules (half
# the test split) could not be chosen on validation before. Resumable; ~20 min on 2 cores.
#   bash scripts/csmith-validation.sh   -> build/csmith-validation/, data/pool-sweep-v2-validation-csmith.jsonl.gz
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-.venv/bin/clang-llm-tool}
OUT=${OUT:-build/csmith-validation}
N=${N:-400}
"$TOOL" corpus csmith --out "$OUT/record/csmith" -n "$N" --first-seed 1000000 --jobs "${JOBS:-2}"
"$TOOL" corpus index --out "$OUT/all" --record "$OUT/record" >/dev/null
mkdir -p "$OUT/corpus"
ln -sfn "$(cd "$OUT/all/modules" && pwd)" "$OUT/corpus/modules"
.venv/bin/python - "$OUT/all/index.jsonl.gz" data/corpus-index-v2.jsonl.gz "$OUT/corpus/index.jsonl.gz" <<'PY'
import gzip, json, sys
new, old, out = sys.argv[1:]
seen = {json.loads(line)["id"] for line in gzip.open(old, "rt")}
rows = [line for line in gzip.open(new, "rt") if json.loads(line)["id"] not in seen]
with gzip.open(out, "wt") as f:
    f.writelines(rows)
print(f"{len(rows)} csmith validation modules ({out})")
PY
sweep=data/pool-sweep-v2-validation-csmith.jsonl.gz
work=$OUT/sweep.jsonl
[ -f "$work" ] || { [ -f "$sweep" ] && gunzip -c "$sweep" > "$work" || true; }
"$TOOL" pool-sweep --out "$work" --pool data/pool-v2.json --index "$OUT/corpus/index.jsonl.gz" --split validation \
  --jobs "${JOBS:-2}"
gzip -c "$work" > "$sweep"
