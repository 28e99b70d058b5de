"""A real tiny model, built once per test session: clang IR → tokenizer → training → int8 export.

Nothing is mocked: the IR comes from clang-22, the tokenizer is a fitted BPE, the model is a
Llama trained for a few seconds until it has memorized three answers, and the export is the
same CTranslate2 int8 conversion that ships. Needs the ``train`` extra (torch, transformers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clang_llm import ir
from clang_llm.optimizer.prompt import build_prompt, normalize_ir, render_answer

CLANG = "clang-22"
CONTEXT = 256

# Three programs, each with its own (memorized) answer.
PROGRAMS = {
    "loop": (
        "int sum(const int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n",
        "Oz gvn-sink",
    ),
    "branch": (
        "int pick(int c, int a, int b) { if (c > 3) return a * 2 + b; return b - a; }\n",
        "Oz",
    ),
    "table": (
        'static const char msg[] = "hello <|end|> world";\n'
        "struct P { int x; double y; };\n"
        "double f(struct P *p) { return p->x * p->y + msg[p->x & 7]; }\n",
        "Os simplifycfg<hoist-common-insts;sink-common-insts>",
    ),
}


@dataclass
class TinyModel:
    model_dir: Path
    prompts: dict[str, str]  # program name -> prompt
    answers: dict[str, str]  # program name -> expected pass list text
    timings: dict[str, float] = field(default_factory=dict)


def compile_ir(source: str, workdir: Path, name: str) -> str:
    """Unoptimized IR exactly as the driver takes it (size attributes, no optnone)."""
    src = workdir / f"{name}.c"
    src.write_text(source)
    out = workdir / f"{name}.ll"
    cmd = [CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-S", "-emit-llvm", str(src), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out.read_text()


def build_tiny_model(workdir: Path) -> TinyModel:
    from tokenizers import Tokenizer

    from clang_llm.train.export import export
    from clang_llm.train.tokenizer import fit_tokenizer
    from clang_llm.train.trainer import train

    timings: dict[str, float] = {}
    t = time.perf_counter()
    irs = {name: compile_ir(src, workdir, name) for name, (src, _) in PROGRAMS.items()}
    timings["clang"] = time.perf_counter() - t

    t = time.perf_counter()
    answers_text = {}
    for name, (_, passes) in PROGRAMS.items():
        before = ir.count_instructions(ir.parse(irs[name]))
        answers_text[name] = render_answer(passes, before, max(1, before // 2))
    texts = [normalize_ir(x) for x in irs.values()] + list(answers_text.values())
    tok_path = fit_tokenizer(texts * 4, workdir / "tokenizer.json", vocab_size=600, min_frequency=2)
    tokenizer = Tokenizer.from_file(str(tok_path))
    timings["tokenizer"] = time.perf_counter() - t

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)

    prompts = {name: build_prompt(irs[name], CONTEXT - 64, count) for name in PROGRAMS}
    examples = workdir / "examples.jsonl"
    with open(examples, "w") as f:
        for name in PROGRAMS:
            f.write(json.dumps({"prompt": prompts[name], "answer": answers_text[name]}) + "\n")

    t = time.perf_counter()
    ckpt = train(
        examples,
        tok_path,
        workdir / "train",
        steps=50,
        batch_size=3,
        seq_len=CONTEXT,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        lr=1e-2,
        warmup_steps=5,
        save_every=25,
        log_every=5,
        cpu_threads=1,
        progress=False,
    )
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    model_dir = export(ckpt, workdir / "model", name="tiny-test")
    timings["export"] = time.perf_counter() - t
    return TinyModel(model_dir, prompts, {n: p for n, (_, p) in PROGRAMS.items()}, timings)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} not installed")
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
