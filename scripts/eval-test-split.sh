#!/usr/bin/env bash
# The test-split evaluation behind docs/eval/ and docs/model-card.md. Resumable: results are cached
# per (method, module) in docs/eval/cache.jsonl.gz, so a rerun only aggregates (delete the cache
# to measure again from scratch: about 3 CPU-hours for the full stage on 2 cores).
#
#   bash scripts/eval-test-split.sh             # all 603 test modules, the main methods -> docs/eval/
#   STAGE=ablation bash scripts/eval-test-split.sh   # samples vs feedback, first 100 -> docs/eval/ablation/
#
# CORPUS: a corpus folder (index.jsonl.gz + modules/); by default the held-out modules shipped in
# data/ are unpacked into build/heldout.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-build/heldout}
if [ ! -f "$CORPUS/index.jsonl.gz" ]; then
  mkdir -p "$CORPUS"
  tar -xJf data/modules-heldout.tar.xz -C "$CORPUS"
  cp data/corpus-index.jsonl.gz "$CORPUS/index.jsonl.gz"
fi
TOOL=${TOOL:-.venv/bin/clang-llm-tool}
common=(--index "$CORPUS/index.jsonl.gz" --split test --labels data/labels.jsonl.gz
        --cache docs/eval/cache.jsonl.gz --jobs "${JOBS:-2}")
case "${STAGE:-full}" in
  full)
    "$TOOL" eval "${common[@]}" --out-dir docs/eval \
      -m oz -m coreset@2+backup -m coreset@4+backup -m coreset@8+backup \
      -m model@1 -m model@1+backup -m model@8+backup -m feedback-short@2+backup ;;
  ablation)
    "$TOOL" eval "${common[@]}" --limit 100 --out-dir docs/eval/ablation \
      -m oz -m coreset@2+backup -m coreset@4+backup -m coreset@8+backup \
      -m model@1+backup -m model@2+backup -m model@4+backup -m model@8+backup \
      -m feedback-fast@2+backup -m feedback-short@2+backup -m feedback-long@2+backup \
      -m feedback-fast@4+backup -m feedback-short@4+backup ;;
  *) echo "STAGE is full or ablation" >&2; exit 2 ;;
esac
