#!/usr/bin/env bash
# Same inputs through two revisions of the code: is the behaviour unchanged? For refactors.
#
#   OLD=478fa72 bash scripts/check-behaviour.sh      # default OLD: HEAD~1; NEW: this working tree
#
# Compares (1) the test-split evaluation of oz and the shipped model's methods rebuilt from the
# committed results cache (table.md and results.json), (2) a fresh run, no cache, of oz,
# coreset@4+backup, autotune@6 and three model-loop methods on 25 test modules (every record but
# its wall time: chosen lists, sizes, opt evaluations, model calls, prediction and IR stats), and
# (3) `dataset info` on the v2 labels. Needs the held-out modules unpacked (scripts/eval-v2.sh
# does it). Prints one line per comparison; exits 1 if any differs.
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=$PWD
OLD_REV=${OLD:-HEAD~1}
WORK=${WORK:-build/check-behaviour}
CORPUS=${CORPUS:-build/heldout}
PY=$NEW/.venv/bin/python
rm -rf "$WORK" && mkdir -p "$WORK"
git worktree remove --force "$WORK/old-tree" 2>/dev/null || true
git worktree add --detach "$WORK/old-tree" "$OLD_REV" >/dev/null
OLD_TREE=$(cd "$WORK/old-tree" && pwd)
W=$(cd "$WORK" && pwd)
IDX=$NEW/$CORPUS/index.jsonl.gz
tool() {  # tool SIDE ARGS...: clang-llm-tool from that side's source tree
  local root=$1; shift
  (cd "$root" && PYTHONPATH=$root "$PY" -c "from clang_llm.cli import app; app()" "$@")
}
for side in old new; do
  root=$NEW; [ $side = old ] && root=$OLD_TREE
  cp "$NEW/docs/eval/cache.jsonl.gz" "$W/$side-cache.jsonl.gz"
  tool "$root" eval --index "$IDX" --split test --labels "$NEW/data/labels.jsonl.gz" --cache "$W/$side-cache.jsonl.gz" \
    --jobs 1 --out-dir "$W/$side-A" --no-plots -m oz -m model@1 -m model@1+backup -m model@8+backup \
    -m feedback-short@2+backup > /dev/null 2>&1
  tool "$root" eval --index "$IDX" --split test --limit 25 --labels "$NEW/data/labels.jsonl.gz" \
    --cache "$W/$side-B.jsonl.gz" --jobs "${JOBS:-1}" --out-dir "$W/$side-B" --no-plots \
    -m oz -m coreset@4+backup -m autotune@6 -m model@2+backup -m feedback-short@2+backup -m feedback-long@2 \
    > /dev/null 2>&1
  tool "$root" dataset info --labels "$NEW/data/labels-v2.jsonl.gz" --index "$IDX" > "$W/$side-info.txt" 2>&1
done
git worktree remove --force "$WORK/old-tree"
"$PY" - "$W" <<'EOF'
import gzip, json, sys
w = sys.argv[1]
bad = 0
def say(ok, what):
    global bad
    bad += not ok
    print(("identical  " if ok else "DIFFERENT  ") + what)
say(open(f"{w}/old-A/table.md").read() == open(f"{w}/new-A/table.md").read()
    and json.load(open(f"{w}/old-A/results.json")) == json.load(open(f"{w}/new-A/results.json")),
    "test-split table and results.json from the cache (oz, model@1, model@1+backup, model@8+backup, feedback-short@2+backup)")
def recs(p):
    return {(r["method"], r["module"]): {k: v for k, v in r.items() if k != "wall_s"}
            for r in map(json.loads, gzip.open(p, "rt"))}
a, b = recs(f"{w}/old-B.jsonl.gz"), recs(f"{w}/new-B.jsonl.gz")
say(a == b and len(a) == 150, "fresh records on 25 test modules: oz, coreset@4+backup, autotune@6, model@2+backup, "
    f"feedback-short@2+backup, feedback-long@2 ({len(a)} vs {len(b)})")
say(open(f"{w}/old-info.txt").read() == open(f"{w}/new-info.txt").read(), "dataset info on the v2 labels")
sys.exit(1 if bad else 0)
EOF
