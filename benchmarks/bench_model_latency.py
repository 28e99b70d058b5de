"""Per-TU model latency on this machine: model load, prompt tokens, generation of k=1 and k=8,
and for a cllm-v2 model the ranking of its whole pool (one forward pass).

Prompts are built exactly as the loop builds them, from the real IR of the bundled example's
TUs (clang-22 -Oz -Xclang -disable-llvm-passes). Reports tokens per second for prompt
processing + generation. Run: .venv/bin/python benchmarks/bench_model_latency.py [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "textkit"


def example_irs(work: Path) -> dict[str, str]:
    from clang_llm import ir

    out = {}
    for src in sorted(EXAMPLE.glob("*.c")):
        bc = work / f"{src.stem}.bc"
        subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src),
                        "-o", str(bc), f"-I{EXAMPLE}"], check=True)
        out[src.name] = str(ir.parse(bc))
    return out


def main() -> None:
    from clang_llm.optimizer.factory import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model_dir = args.model or default_model_dir()

    t0 = time.perf_counter()
    import ctranslate2  # noqa: F401  (import cost reported apart from the load)

    t_import = time.perf_counter() - t0
    from clang_llm.model import load_model
    from clang_llm.optimizer.formats import get_format
    from clang_llm.optimizer.prompt import prompt_budgets

    loads = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model = load_model(model_dir, intra_threads=args.threads)
        loads.append(time.perf_counter() - t0)
    first_budget, _ = prompt_budgets(model.context_length, args.new_tokens, model.card.prompt_budget)
    build_prompt = get_format(model.card.prompt_format).build_prompt
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in example_irs(Path(tmp)).items():
            prompt = build_prompt(text, first_budget, model.count_tokens)
            row = {"tu": name, "prompt_tokens": model.count_tokens(prompt)}
            for k in (1, 8):
                times, gen_tokens = [], 0
                for r in range(args.repeat):
                    t0 = time.perf_counter()
                    answers = model.generate(prompt, k=k, seed=r, temperature=0.0 if k == 1 else 0.8,
                                             max_new_tokens=args.new_tokens)
                    times.append(time.perf_counter() - t0)
                    gen_tokens = sum(model.count_tokens(a) for a in answers)
                t = statistics.median(times)
                row[f"k{k}_s"] = round(t, 3)
                row[f"k{k}_gen_tokens"] = gen_tokens
                row[f"k{k}_tok_per_s"] = round((row["prompt_tokens"] * k + gen_tokens) / t, 1)
            if model.pool:
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    model.rank_pool(prompt)
                    times.append(time.perf_counter() - t0)
                row["rank_s"] = round(statistics.median(times), 3)
            rows.append(row)
    # A full-context prompt: the worst case the loop can send.
    filler = "  %1 = add i32 %0, 1\n" * (model.context_length * 2)
    long_prompt = build_prompt("define i32 @f(i32 %0) {\n" + filler + "  ret i32 %1\n}\n",
                               model.context_length - args.new_tokens, model.count_tokens)
    t0 = time.perf_counter()
    model.generate(long_prompt, k=1, temperature=0.0, max_new_tokens=args.new_tokens)
    full = {"prompt_tokens": model.count_tokens(long_prompt), "k1_s": round(time.perf_counter() - t0, 3)}
    # The loop's own round-1 prompt for a TU of 2,000+ tokens of IR (cut to the model's budget).
    t0 = time.perf_counter()
    first = build_prompt("define i32 @f(i32 %0) {\n" + filler + "  ret i32 %1\n}\n", first_budget, model.count_tokens)
    full["round1_prompt_build_s"] = round(time.perf_counter() - t0, 3)
    full["round1_prompt_tokens"] = model.count_tokens(first)
    if model.pool:
        t0 = time.perf_counter()
        model.rank_pool(first)
        full["round1_rank_s"] = round(time.perf_counter() - t0, 3)
    result = {"model": str(model_dir), "model_id": model.id, "context": model.context_length,
              "threads": args.threads, "ctranslate2_import_s": round(t_import, 3),
              "load_s_median": round(statistics.median(loads), 3), "tus": rows, "full_context_prompt": full}
    print(f"model {model_dir} (context {model.context_length}, {args.threads} threads)")
    print(f"import ctranslate2 {t_import:.3f} s; model load (median of {args.repeat}) {result['load_s_median']} s")
    print("| TU | prompt tokens | k=1 s | k=1 tok/s | k=8 s | k=8 tok/s | rank the pool s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tu']} | {r['prompt_tokens']} | {r['k1_s']} | {r['k1_tok_per_s']} | {r['k8_s']} | "
              f"{r['k8_tok_per_s']} | {r.get('rank_s', '–')} |")
    print(f"full-context prompt: {full['prompt_tokens']} tokens, one candidate in {full['k1_s']} s")
    print(f"round-1 prompt of a large TU: built in {full['round1_prompt_build_s']} s, "
          f"{full['round1_prompt_tokens']} tokens, pool ranked in {full.get('round1_rank_s', '–')} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
