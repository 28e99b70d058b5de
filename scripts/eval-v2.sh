#!/usr/bin/env bash
# Evaluations on the v2 labels: choosing the wrapper's defaults on the validation split, and the
# test-split numbers. Resumable: results are cached per (method, module) in the output folder.
#
#   STAGE=validation bash scripts/eval-v2.sh   # candidate defaults at <= 16 opt evaluations -> docs/eval-v2/validation/
#   STAGE=test bash scripts/eval-v2.sh         # the chosen default against the baselines -> docs/eval/
#   STAGE=test-rank bash scripts/eval-v2.sh    # rank@k at each budget, first 318 test modules
#                                              #   -> docs/eval/rank-318/ (same cache)
#   STAGE=test-coreset bash scripts/eval-v2.sh # coreset@k alone on all 603 -> docs/eval/coreset-603/
#   STAGE=ablation bash scripts/eval-v2.sh     # samples vs feedback forms, first 100 test modules
#                                              #   -> docs/eval/ablation/
#
# TRAIN_LABELS: how many lines of data/labels-v2-train.jsonl.gz choose the coreset (the labels
# are appended in labelling order, so the first N lines are the snapshot a model was trained on;
# default: all). MODEL: the model directory (default: the shipped one). VERIFY=0 runs opt
# without -verify-each (same sizes, faster; for choosing settings only).
set -euo pipefail
cd "$(dirname "$0")/.."
# The held-out bitcode with the v2 index: its train split is the one the v2 labels were made on,
# so the coreset sees every train label (the v1 index knows only 883 of them).
CORPUS=${CORPUS:-build/heldout-v2}
if [ ! -f "$CORPUS/index.jsonl.gz" ]; then
  mkdir -p "$CORPUS"
  tar -xJf data/modules-heldout.tar.xz -C "$CORPUS"
  cp data/corpus-index-v2.jsonl.gz "$CORPUS/index.jsonl.gz"
fi
TOOL=${TOOL:-.venv/bin/clang-llm-tool}
mkdir -p build
labels=build/labels-v2-eval.jsonl.gz
{ zcat data/labels-v2.jsonl.gz; zcat data/labels-v2-train.jsonl.gz | head -n "${TRAIN_LABELS:-100000000}"; } \
  | gzip > "$labels"
verify=(); [ "${VERIFY:-1}" = 0 ] && verify=(--no-verify)
# coreset@k: the first k stored lists of the cllm-v2 pool (the lists a cllm-v2 model ranks).
coreset=(--coreset "${POOL:-data/pool-v2.json}")
model=(); [ -n "${MODEL:-}" ] && model=(--model "$MODEL")
case "${STAGE:-validation}" in
  validation)
    out=docs/eval-v2/validation
    "$TOOL" eval --index "$CORPUS/index.jsonl.gz" --split validation --labels "$labels" "${model[@]}" "${coreset[@]}" \
      --cache "$out/cache.jsonl.gz" --out-dir "$out" --jobs "${JOBS:-2}" "${verify[@]}" \
      -m oz -m coreset@1 -m model@1 -m rank@1 -m rank@6s2+backup -m rank@8+backup -m rank@13s2+backup \
      -m rank@15+backup -m model@8+backup ;;
  test)
    out=docs/eval
    "$TOOL" eval --index "$CORPUS/index.jsonl.gz" --split test --labels "$labels" "${model[@]}" "${coreset[@]}" \
      --cache "$out/cache.jsonl.gz" --out-dir "$out" --jobs "${JOBS:-2}" "${verify[@]}" \
      -m oz -m coreset@1 -m coreset@4+backup -m coreset@8+backup -m coreset@16+backup \
      -m model@1 -m rank@1 -m "${DEFAULT_METHOD:-default}+backup" ;;
  test-rank)  # rank@k against its budget, on the first 318 test modules (the seeded order)
    out=docs/eval/rank-318
    "$TOOL" eval --index "$CORPUS/index.jsonl.gz" --split test --limit 318 --labels "$labels" "${model[@]}" \
      "${coreset[@]}" --cache docs/eval/cache.jsonl.gz --out-dir "$out" --jobs "${JOBS:-2}" "${verify[@]}" \
      -m oz -m coreset@1 -m coreset@4+backup -m coreset@8+backup -m coreset@16+backup \
      -m model@1 -m rank@1 -m rank@4+backup -m rank@8+backup -m rank@15+backup -m "${DEFAULT_METHOD:-default}+backup" ;;
  test-coreset)  # the model-free baselines alone, all 603 test modules, from the test stage's cache
    out=docs/eval/coreset-603
    "$TOOL" eval --index "$CORPUS/index.jsonl.gz" --split test --labels "$labels" "${coreset[@]}" \
      --cache docs/eval/cache.jsonl.gz --out-dir "$out" --jobs "${JOBS:-2}" "${verify[@]}" \
      -m oz -m coreset@1 -m coreset@4+backup -m coreset@8+backup -m coreset@16+backup ;;
  ablation)  # plain samples against the feedback forms (and ranking) at equal opt budgets
    out=docs/eval/ablation
    "$TOOL" eval --index "$CORPUS/index.jsonl.gz" --split test --limit 100 --labels "$labels" "${model[@]}" \
      "${coreset[@]}" --cache "$out/cache.jsonl.gz" --out-dir "$out" --jobs "${JOBS:-2}" "${verify[@]}" \
      -m oz -m coreset@2+backup -m coreset@4+backup -m coreset@8+backup \
      -m model@1+backup -m model@2+backup -m model@4+backup -m model@8+backup \
      -m feedback-fast@2+backup -m feedback-short@2+backup -m feedback-long@2+backup \
      -m feedback-fast@4+backup -m feedback-short@4+backup \
      -m rank@2+backup -m rank@4+backup -m rank@8+backup ;;
  *) echo "STAGE is validation, test, test-rank, test-coreset or ablation" >&2; exit 2 ;;
esac
