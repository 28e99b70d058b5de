"""Autotuner, dataset info, eval harness and screening on tiny modules, checked against an
independent measurement: our own opt-22 / clang-22 runs, llvmlite counts, pyelftools sizes."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from measure import instructions, text_and_alloc

from clang_llm.errors import MethodError
from clang_llm.eval import evaluate, markdown_table, parse_method, write_outputs
from clang_llm.eval.report import package_table, summarize
from clang_llm.passes import PassList, Vocabulary
from clang_llm.records import read_labels as _read_labels
from clang_llm.records import read_records
from clang_llm.train.autotune import autotune, load_tasks
from clang_llm.train.configs import AutotuneConfig
from clang_llm.train.dataset import dataset_info
from clang_llm.train.screen import bisect_failure

CLANG, OPT = "clang-22", "opt-22"
pytestmark = pytest.mark.skipif(shutil.which(CLANG) is None or shutil.which(OPT) is None,
                                reason="needs clang-22 and opt-22")

SNIPPETS = {
    # train: duplicate functions (mergefunc wins), a switch + strings
    "t_dup": ("train", """
int g(int *p, int n) { int t = 0; for (int i = 0; i < n; i++) t += p[i] * 3 + (t >> 2); return t; }
int h(int *p, int n) { int t = 0; for (int i = 0; i < n; i++) t += p[i] * 3 + (t >> 2); return t; }
"""),
    "t_sw": ("train", """
int sw(int k) { switch (k) { case 0: return 11; case 1: return 23; case 2: return 5; case 3: return 99;
  default: return 0; } }
"""),
    # test: duplicates again (coreset's winner applies) and a plain list walk
    "x_dup": ("test", """
struct S { int a, b; };
int f1(struct S *s, int n) { int m = 0; for (int i = 0; i < n; i++) m ^= s[i].a * 7 - s[i].b; return m; }
int f2(struct S *s, int n) { int m = 0; for (int i = 0; i < n; i++) m ^= s[i].a * 7 - s[i].b; return m; }
"""),
    "x_list": ("test", """
typedef struct node { struct node *next; int v; } node;
int sum(node *n) { int s = 0; while (n) { s += n->v; n = n->next; } return s; }
"""),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """X.bc + X.json recordings made with clang-22, like CLANG_LLM_RECORD leaves them."""
    d = tmp_path_factory.mktemp("rec")
    for name, (split, code) in SNIPPETS.items():
        src = d / f"{name}.c"
        src.write_text(code)
        subprocess.run([CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o",
                        str(d / f"{name}.bc")], check=True)
        (d / f"{name}.json").write_text(json.dumps({"source": str(src), "lang": "c", "codegen_flags": [],
                                                   "split": split, "package": f"pkg-{name[0]}"}))
    return d


# ---- independent measurement -------------------------------------------------------------------

_text_bytes = text_and_alloc
_count = instructions


def _clang_pipeline(level: str) -> str:
    out = subprocess.run([CLANG, f"-{level}", "-x", "c", "-c", "/dev/null", "-o", "/dev/null", "-mllvm",
                          "-print-pipeline-passes"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def _independent(src: Path, bc: Path, pass_list: str, tmp: Path) -> tuple[int, int, int]:
    """(.text, alloc, instructions) of `pass_list` on `bc`, by running the tools ourselves."""
    levels = Vocabulary.default().levels
    wrap = {"module": "{}", "cgscc": "cgscc({})", "function": "function({})", "loop": "function(loop({}))",
            "loop-mssa": "function(loop-mssa({}))"}
    parts = [_clang_pipeline(t) if levels[t] == "base" else wrap[levels[t]].format(t) for t in pass_list.split()]
    out_bc, obj = tmp / "i.bc", tmp / "i.o"
    subprocess.run([OPT, f"-passes={','.join(parts)}", str(bc), "-o", str(out_bc)], check=True)
    subprocess.run([CLANG, "-Oz", "-c", "-x", "ir", str(out_bc), "-o", str(obj), "-Xclang",
                    "-disable-llvm-passes"], check=True)
    text, alloc = _text_bytes(obj)
    if pass_list == "Oz":  # what clang -Oz -c really ships must be the same object
        subprocess.run([CLANG, "-Oz", "-c", str(src), "-o", str(tmp / "direct.o")], check=True)
        assert _text_bytes(tmp / "direct.o") == (text, alloc)
    return text, alloc, _count(out_bc)


# ---- tests -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labels(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lab") / "labels.jsonl.gz"
    tasks = load_tasks(recordings=corpus)
    cfg = AutotuneConfig(budget=4, timeout=60, default_broadcast=("Oz mergefunc", "O1"))
    summary = autotune(tasks, out, cfg, jobs=1, progress=False)
    assert summary.done_now == 4 and summary.errors == 0
    return out


def test_autotune_no_larger_than_oz_and_counts(corpus: Path, labels: Path, tmp_path: Path) -> None:
    recs = {r["id"]: r for r in read_labels(labels)}
    assert set(recs) == set(SNIPPETS)
    for mid, r in recs.items():
        assert r["schema_version"] == 1 and r["status"] == "ok"
        assert r["best"]["text"] <= r["oz"]["text"] and r["best"]["alloc"] <= r["oz"]["alloc"]
        assert 1 < r["evals"] <= 5 and r["cpu_s"] > 0
        assert 1 <= len(r["top"]) <= 5 and r["top"][0]["pass_list"] == r["best"]["pass_list"]
        src, bc = corpus / f"{mid}.c", corpus / f"{mid}.bc"
        assert _independent(src, bc, "Oz", tmp_path) == (r["oz"]["text"], r["oz"]["alloc"], r["oz"]["count"])
        assert _independent(src, bc, r["best"]["pass_list"], tmp_path) == (
            r["best"]["text"], r["best"]["alloc"], r["best"]["count"])
    # Duplicate functions: the broadcast list "Oz mergefunc" (or better) must be found.
    assert recs["t_dup"]["best"]["text"] < recs["t_dup"]["oz"]["text"]


def _gzip_members(data: bytes) -> list[bytes]:
    """The gzip members of a results file, in order (autotune appends one member per record)."""
    members: list[bytes] = []
    while data:
        d = zlib.decompressobj(wbits=31)
        d.decompress(data)
        assert d.eof, "a complete file ends on a member boundary"
        end = len(data) - len(d.unused_data)
        members.append(data[:end])
        data = data[end:]
    return members


def read_labels(path: Path) -> list[dict]:
    """The labels as their JSON form (what the file holds), for comparisons by key."""
    return [r.to_json() for r in _read_labels(path)]


def _stable(records: list[dict]) -> dict[str, dict]:
    """Records by id without their timings (wall_s, cpu_s: all that differs between two runs)."""
    return {r["id"]: {k: v for k, v in r.items() if k not in ("wall_s", "cpu_s")} for r in records}


def _torn_copy(labels: Path, dest: Path) -> tuple[list[str], str]:
    """`labels` as a run killed while writing its last record leaves it: that record cut in the middle
    (half a gzip member for .gz, half a JSON line for .jsonl). The ids of the complete records and the torn one."""
    members = _gzip_members(labels.read_bytes())
    lines = [gzip.decompress(m) for m in members]  # one member per record, as append_records writes them
    assert len(lines) == len(SNIPPETS) and all(ln.count(b"\n") == 1 for ln in lines)
    chunks = members if dest.suffix == ".gz" else lines  # .jsonl: the bytes append_records writes there
    dest.write_bytes(b"".join(chunks[:-1]) + chunks[-1][: len(chunks[-1]) // 2])
    ids = [json.loads(ln)["id"] for ln in lines]
    return ids[:-1], ids[-1]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl"])
def test_autotune_resumes(corpus: Path, labels: Path, tmp_path: Path, suffix: str) -> None:
    tasks = load_tasks(recordings=corpus)
    seen: list[str] = []
    summary = autotune(tasks, labels, AutotuneConfig(budget=4), jobs=1, progress=False,
                       on_record=lambda r: seen.append(r.id))
    assert summary.already_done == 4 and summary.done_now == 0 and not seen
    # Killed while writing its last record: the file ends in half a record.
    partial = tmp_path / f"partial{suffix}"
    kept, lost = _torn_copy(labels, partial)
    before, torn = read_records(partial)
    assert torn and [r["id"] for r in before] == kept  # the complete records still read
    cfg = AutotuneConfig(budget=4, timeout=60, default_broadcast=("Oz mergefunc", "O1"))  # as the `labels` run
    summary = autotune(tasks, partial, cfg, jobs=1, progress=False, on_record=lambda r: seen.append(r.id))
    assert seen == [lost]  # exactly the lost module is redone, the complete ones are kept
    assert (summary.already_done, summary.done_now, summary.errors) == (len(kept), 1, 0)
    after, torn = read_records(partial)
    assert not torn and [r["id"] for r in after] == [*kept, lost]  # readable, each module once
    assert _stable(after) == _stable(read_labels(labels))  # the labels of the uninterrupted run
    size = partial.stat().st_size
    again = autotune(tasks, partial, cfg, jobs=1, progress=False)  # and nothing is left to do
    assert (again.already_done, again.done_now) == (4, 0) and partial.stat().st_size == size


def test_dataset_info(labels: Path, corpus: Path, tmp_path: Path) -> None:
    import gzip

    index = tmp_path / "index.jsonl.gz"
    with gzip.open(index, "wt") as f:
        for name, (split, _) in SNIPPETS.items():
            f.write(json.dumps({"id": name, "package": f"pkg-{name[0]}", "split": split}) + "\n")
    info = dataset_info(labels, index)
    assert info["index"]["modules"] == 4 and info["index"]["packages"] == 2
    assert info["index"]["splits"]["test"]["modules"] == 2
    lb = info["labels"]
    assert lb["labelled"] == 4 and lb["coverage"] == 1.0
    assert lb["text"]["geomean"] > 0 and lb["text"]["share_improved"] >= 0.25
    assert lb["cpu_s"] > 0


def test_eval_table_matches_independent_count(corpus: Path, labels: Path, tmp_path: Path) -> None:
    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"]
    methods = ["oz", "coreset@2", "autotune@3"]
    cache = tmp_path / "cache.jsonl"
    res = evaluate(methods, test, labels_path=labels, cache_path=cache, jobs=1, timeout=60, progress=False)
    assert [r["method"] for r in res.summary] == [*methods, "autotuner (labels)"]
    # The reference row: the labels' own gain on the evaluated modules, the 100 % of every share.
    lab = {r.id: r for r in _read_labels(labels)}
    ref = res.summary[-1]
    want = [lab[t.id].best.text / lab[t.id].oz.text for t in test]  # type: ignore[union-attr]
    assert ref["modules"] == len(test) and ref["pct_of_autotuner"] == 1.0
    assert ref["text"]["geomean"] == pytest.approx(1 - math.exp(sum(map(math.log, want)) / len(want)), abs=1e-9)
    assert "Oz mergefunc" in res.setup["coreset"]  # the train winner
    by = {(r["method"], r["module"]): r for r in (x.to_json() for x in res.records)}
    assert len(by) == 6
    for row in res.summary[:-1]:
        ratios_t, ratios_c = [], []
        for t in test:
            r = by[(row["method"], t.id)]
            src, bc = corpus / f"{t.id}.c", Path(t.bc)
            oz = _independent(src, bc, "Oz", tmp_path)
            got = _independent(src, bc, r["chosen"]["pass_list"], tmp_path)
            assert got == (r["chosen"]["text"], r["chosen"]["alloc"], r["chosen"]["count"])
            assert got[0] <= oz[0]  # coreset without backup still never lost here; autotune never may
            ratios_t.append(got[0] / oz[0])
            ratios_c.append(got[2] / oz[2])
        gm_t = 1 - math.exp(sum(map(math.log, ratios_t)) / len(ratios_t))
        gm_c = 1 - math.exp(sum(map(math.log, ratios_c)) / len(ratios_c))
        assert row["text"]["geomean"] == pytest.approx(gm_t, abs=1e-9)
        assert row["instructions"]["geomean"] == pytest.approx(gm_c, abs=1e-9)
        assert row["text"]["mean"] == pytest.approx(1 - sum(ratios_t) / len(ratios_t), abs=1e-9)
        assert row["modules"] == 2
        line = next(ln for ln in markdown_table(res.summary).splitlines() if ln.startswith(f"| {row['method']} |"))
        assert f"{gm_t * 100:+.2f}%" in line
        # The per-package table: one geomean per package, over that package's modules only.
        pkg_line = next(ln for ln in package_table(methods, res.records).splitlines()
                        if ln.startswith(f"| {row['method']} |"))
        for pkg in sorted({t.package for t in test}):
            rs = [rt for rt, t in zip(ratios_t, test, strict=True) if t.package == pkg]
            assert f"{(1 - math.exp(sum(map(math.log, rs)) / len(rs))) * 100:+.2f}%" in pkg_line
    assert res.summary[0]["text"]["geomean"] == 0.0
    assert res.summary[1]["text"]["geomean"] > 0  # coreset's mergefunc wins on x_dup
    assert res.summary[1]["evals_per_module"] == 3.0
    # Resumable: a second run takes everything from the cache.
    fresh: list[dict] = []
    res2 = evaluate(methods, test, labels_path=labels, cache_path=cache, jobs=1, progress=False,
                    timeout=60, on_record=fresh.append)
    assert not fresh and res2.summary[1]["text"] == res.summary[1]["text"]
    paths = write_outputs(res2, tmp_path / "out", plots=False)
    assert json.loads(paths["json"].read_text())["summary"][0]["method"] == "oz"
    assert "by source package" in paths["table"].read_text()


def test_model_methods_unavailable_without_model(corpus: Path, tmp_path: Path) -> None:
    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"][:1]
    res = evaluate(["model@2+backup"], test, jobs=1, progress=False,
                   model_settings={"model": str(tmp_path / "no-model")})
    assert res.summary[0]["available"] is False and "model@2+backup" in res.unavailable


def test_parse_method() -> None:
    assert parse_method("coreset@4+backup").backup
    assert parse_method("feedback-long@3").form == "long"
    assert parse_method("autotune@8", backup=True).name == "autotune@8+backup"
    assert parse_method("oz", backup=True).name == "oz"
    for bad in ("coreset", "feedback-slow@2", "model@0", "best@3"):
        with pytest.raises(MethodError):
            parse_method(bad)


def test_bisect_failure_finds_culprits() -> None:
    # Wrong output whenever both gvn-sink and mergefunc run (an interaction), whatever else runs.
    def fails(pl: PassList) -> bool:
        return "gvn-sink" in pl.tokens and "mergefunc" in pl.tokens

    minimal, culprits = bisect_failure(("Oz", "dse", "gvn-sink", "sink", "mergefunc", "adce"), fails)
    assert set(minimal) == {"gvn-sink", "mergefunc"} or minimal == ("Oz", "gvn-sink", "mergefunc")
    assert sorted(culprits) == ["gvn-sink", "mergefunc"]


@pytest.mark.skipif(shutil.which("csmith") is None, reason="needs csmith")
def test_screen_smoke(labels: Path, tmp_path: Path) -> None:
    from clang_llm.train.configs import ScreenConfig
    from clang_llm.train.screen import run_screen

    out = tmp_path / "screen-report.json"
    rep = run_screen(labels, ["Oz gvn-sink"], ScreenConfig(programs=1, pipelines=1, jobs=1), out, progress=False)
    data = json.loads(out.read_text())
    assert data["programs"][0]["seed"] == 900_001 and "Oz gvn-sink" in data["pipelines"]
    used = sum(p["used"] for p in rep.programs)
    assert rep.checks == used * len(rep.pipelines)
    assert rep.outcomes.get("wrong", 0) == len([f for f in rep.failures if f["outcome"] == "wrong"])


# An opt that really miscompiles: the real opt-22 runs, and then, when the -passes string names the
# trigger pass, every `ret` of main is rewritten to return 7 (llvm-dis, edit, llvm-as), so the program
# builds, verifies and runs, but exits 7 where its -O0 build exits 0.
MISCOMPILING_OPT = r'''
import re
import subprocess
import sys

args = sys.argv[1:]
rc = subprocess.run([OPT, *args], check=False).returncode
passes = next((a for a in args if a.startswith("-passes=")), "")
if rc == 0 and TRIGGER in passes:
    out = args[args.index("-o") + 1]
    text = subprocess.run([DIS, out, "-o", "-"], capture_output=True, text=True, check=True).stdout
    main = re.compile(r"^define [^\n]*@main\(.*?^}$", re.M | re.S)
    assert main.search(text), "no main in the output"
    text = main.sub(lambda m: re.sub(r"\bret i32 [^\n]+", "ret i32 7", m.group(0)), text)
    subprocess.run([AS, "-", "-o", out], input=text, text=True, check=True)
    with open(LOG, "a") as f:
        f.write(passes + "\n")
sys.exit(rc)
'''


@pytest.mark.skipif(shutil.which("csmith") is None, reason="needs csmith")
def test_screen_catches_a_real_miscompile_and_bisects_to_its_pass(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Screening with an opt that miscompiles whenever gvn-sink runs: the list with gvn-sink is `wrong`
    on every program, its bisection drops the innocent passes and names gvn-sink, and a list without
    it (through the same opt) is `ok`."""
    import sys

    from clang_llm.train.configs import ScreenConfig
    from clang_llm.train.screen import run_screen

    log = tmp_path / "miscompiled.log"
    fake = tmp_path / "opt-miscompiles"
    consts = {"OPT": shutil.which(OPT), "DIS": shutil.which("llvm-dis-22"), "AS": shutil.which("llvm-as-22"),
              "TRIGGER": "gvn-sink", "LOG": str(log)}
    if None in consts.values():
        pytest.skip("needs llvm-dis-22 and llvm-as-22")
    fake.write_text(f"#!{sys.executable}\n" + "".join(f"{k} = {v!r}\n" for k, v in consts.items())
                    + MISCOMPILING_OPT)
    fake.chmod(0o755)
    monkeypatch.setenv("CLANG_LLM_OPT", str(fake))

    bad, control = "Oz dse gvn-sink adce", "Oz dse adce"
    out = tmp_path / "screen-report.json"
    rep = run_screen(None, [bad, control], ScreenConfig(programs=1, jobs=1), out, progress=False)
    used = [p["seed"] for p in rep.programs if p["used"]]
    assert used, f"no csmith program was usable: {rep.programs}"
    assert rep.pipelines == [bad, control] and rep.checks == 2 * len(used)
    assert rep.outcomes == {"wrong": len(used), "ok": len(used)}  # the control list through the same opt is ok
    assert not rep.invalid
    assert [(f["pipeline"], f["seed"], f["outcome"]) for f in rep.failures] == [(bad, s, "wrong") for s in used]
    for f in rep.failures:
        assert f["detail"].endswith("exit=7")  # what the program really printed, with the exit the edit made
        assert f["implicated"] == ["gvn-sink"]
        assert f["minimal"] in ("Oz gvn-sink", "gvn-sink")  # dse and adce dropped: the output is wrong without them
    assert rep.implicated_passes == {"gvn-sink": len(used)}
    assert json.loads(out.read_text())["failures"] == rep.failures
    triggered = log.read_text().splitlines()
    assert triggered and all("gvn-sink" in p for p in triggered)  # the miscompile did happen


# ---- the model methods with a real (tiny) model --------------------------------------------------

EVAL_CONTEXT, EVAL_NEW_TOKENS = 512, 64
EVAL_TEMPERATURE = 2.0  # of the samples after the greedy answer: hot enough that they rarely repeat it
GOOD_IR = "define i32 @f(i32 %x) {\n  %y = add i32 %x, 1\n  ret i32 %y\n}\n"
# What the tiny model is trained to answer on the test modules' round-1 prompts: a list that beats
# -Oz (mergefunc merges x_dup's twin functions; with generated IR that parses) and one far larger
# than -Oz (dse alone, no -Oz pipeline: a candidate +backup must refuse). The predicted counts are
# wrong, so feedback goes on to round 2. How well it learns only decides which cases occur below.
EVAL_ANSWERS: dict[str, tuple[str, str | None]] = {"x_dup": ("Oz mergefunc", GOOD_IR), "x_list": ("dse", None)}
# The methods, and what each name promises: (samples per round, rounds, feedback form, -Oz backup).
MODEL_METHODS: dict[str, tuple[int, int, str, bool]] = {
    "model@1": (1, 1, "short", False),
    "model@2+backup": (2, 1, "short", True),
    "feedback-short@2+backup": (1, 2, "short", True),
}


def test_module_text_does_not_depend_on_earlier_parses(corpus: Path) -> None:
    """The eval parses every module (and every opt output) in one process: a module's text, hence
    its prompt, must be what a fresh process (the driver) sees, not `%struct.node.3`."""
    from clang_llm import ir

    first = str(ir.parse(corpus / "x_list.bc"))
    assert "%struct.node = type" in first
    for name in ("x_dup", "x_list", "t_dup"):
        ir.parse(corpus / f"{name}.bc")
    assert str(ir.parse(corpus / "x_list.bc")) == first
    assert ir.count_instructions(ir.parse(first)) == _count(corpus / "x_list.bc")


@pytest.fixture(scope="module")
def eval_model(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CTranslate2 model built like tests/model_fixture.py's (fitted BPE, a Llama trained for a
    few seconds, the shipped int8 export), on the loop's own round-1 prompts of the test modules."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from clang_llm import ir
    from clang_llm.optimizer.prompt import build_prompt, normalize_ir, prompt_budgets, render_answer
    from clang_llm.train.export import export
    from clang_llm.train.tokenizer import fit_tokenizer
    from clang_llm.train.trainer import train

    work = tmp_path_factory.mktemp("eval-model")
    irs = {n: str(ir.parse(corpus / f"{n}.bc")) for n in EVAL_ANSWERS}
    answers = {n: render_answer(p, ir.count_instructions(ir.parse(corpus / f"{n}.bc")), 9999, x)
               for n, (p, x) in EVAL_ANSWERS.items()}
    # Fitted on prompt text, which has no paths (the corpus is in a new temp dir each run): the same model each run.
    tok = fit_tokenizer([*map(normalize_ir, irs.values()), *answers.values()] * 4, work / "tok.json", vocab_size=900)
    t = Tokenizer.from_file(str(tok))
    budget = prompt_budgets(EVAL_CONTEXT, EVAL_NEW_TOKENS)[0]  # round 1's prompt, as the loop builds it
    with open(work / "ex.jsonl", "w") as f:
        for n in EVAL_ANSWERS:
            prompt = build_prompt(irs[n], budget, lambda s: len(t.encode(s).ids))
            f.write(json.dumps({"prompt": prompt, "answer": answers[n]}) + "\n")
    ckpt = train(work / "ex.jsonl", tok, work / "train", steps=80, batch_size=2, seq_len=EVAL_CONTEXT,
                 hidden_size=64, num_layers=2, num_heads=4, lr=1e-2, warmup_steps=5, save_every=1000,
                 log_every=20, cpu_threads=1, progress=False)
    return export(ckpt, work / "model", name="eval-test")


def _loop_directly(model: Any, model_dir: Path, bc: Path, method: str, work: Path) -> dict[str, Any]:
    """What the eval must report for `method` on `bc`: the real ModelLoop run here, on a plain
    TUBuilder (no replaying), with the settings the method's name promises; the pick, the opt
    evaluations and the model metrics are then worked out from its transcript alone."""
    from clang_llm import ir
    from clang_llm.build.tubuilder import TUBuilder
    from clang_llm.config import Settings
    from clang_llm.optimizer.base import TUContext
    from clang_llm.optimizer.loop import ModelLoop
    from clang_llm.passes import OZ

    samples, rounds, form, backup = MODEL_METHODS[method]
    settings = Settings(samples=samples, rounds=rounds, feedback=form, model=str(model_dir),
                        max_new_tokens=EVAL_NEW_TOKENS, temperature=EVAL_TEMPERATURE, jobs=1)
    work.mkdir(parents=True)
    b = TUBuilder(Path(str(shutil.which(CLANG))), Path(str(shutil.which(OPT))), [], "c", bc, work, 60)
    mod = ir.parse(bc)
    b.count_before = ir.count_instructions(mod)
    oz = b.evaluate(OZ, verify_each=False)
    assert oz.sizes is not None
    tu = TUContext(ir_path=bc, ir_text=str(mod), count_before=b.count_before, baseline=oz, evaluate=b.evaluate,
                   settings=settings)
    d = ModelLoop(model, settings).optimize(tu)
    cands = [{**c.finding.to_json(), **{f"p_{k}": v for k, v in c.prediction.to_json().items()}}
             for r in d.rounds for c in r.candidates]

    def key(o: dict[str, Any]) -> tuple[int, int, int]:
        return o["text"], o["alloc"], o["count"] or 0

    base = {"pass_list": "Oz", "text": oz.sizes.text, "alloc": oz.sizes.alloc, "count": oz.count_after}
    picks = [{"pass_list": c["pass_list"], "text": c["sizes"]["text"], "alloc": c["sizes"]["alloc"],
              "count": c["count_after"]} for c in cands if c["valid"]]
    if backup:  # only what is no larger than -Oz on .text and alloc, and smaller on some key, may ship
        picks = [o for o in picks if o["text"] <= base["text"] and o["alloc"] <= base["alloc"] and key(o) < key(base)]
    preds = [(c["p_count_after"], c["count_after"]) for c in cands
             if c["p_count_after"] is not None and c["count_after"] is not None]
    parses = [c["p_ir_parses"] for c in cands if c["p_ir_parses"] is not None]
    bleus = [c["p_bleu"] for c in cands if c["p_bleu"] is not None]
    return {
        "oz": base, "chosen": min(picks, key=key, default=base), "model_calls": d.model_calls,
        "evals": 1 + sum(r.opt_evaluations for r in d.rounds),  # -Oz + every opt run the loop asked for
        "model": {"candidates": len(cands), "valid": sum(1 for c in cands if c["valid"]),
                  "pred_n": len(preds), "pred_exact": sum(1 for p, a in preds if p == a),
                  "pred_abs_err": float(sum(abs(p - a) for p, a in preds)),
                  "ir_n": len(parses), "ir_parsed": sum(parses), "bleu_n": len(bleus), "bleu_sum": sum(bleus)},
    }


def test_model_methods_with_a_real_model(corpus: Path, labels: Path, eval_model: Path, tmp_path: Path) -> None:
    """model@k, feedback-<form>@R and +backup through the real ModelLoop and a real tiny CTranslate2
    model: every shipped object re-measured by us, +backup never larger than -Oz, opt evaluations within
    the method's budget, and every record and summary metric equal to the loop run directly."""
    from clang_llm.model import load_model

    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"]
    names = list(MODEL_METHODS)
    res = evaluate(names, test, labels_path=labels, jobs=1, progress=False,
                   model_settings={"model": str(eval_model), "max_new_tokens": EVAL_NEW_TOKENS,
                                   "temperature": EVAL_TEMPERATURE})
    assert not res.unavailable and [r["method"] for r in res.summary] == [*names, "autotuner (labels)"]
    by = {(r["method"], r["module"]): r for r in (x.to_json() for x in res.records)}
    assert len(by) == len(res.records) == len(names) * len(test)
    assert all(r.status == "ok" for r in res.records), [r.reason for r in res.records]

    model = load_model(eval_model, intra_threads=1)
    measured: dict[tuple[str, str], tuple[int, int, int]] = {}
    totals: dict[str, Counter[str]] = {n: Counter() for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for name, (samples, rounds, _, backup) in MODEL_METHODS.items():
        for t in test:
            r, bc = by[(name, t.id)], Path(t.bc)
            for pl in ("Oz", r["chosen"]["pass_list"]):
                if (t.id, pl) not in measured:
                    measured[(t.id, pl)] = _independent(corpus / f"{t.id}.c", bc, pl, tmp_path)
            oz, got = measured[(t.id, "Oz")], measured[(t.id, r["chosen"]["pass_list"])]
            assert (r["oz"]["text"], r["oz"]["alloc"], r["oz"]["count"]) == oz
            assert (r["chosen"]["text"], r["chosen"]["alloc"], r["chosen"]["count"]) == got  # what ships, as measured
            if backup:  # without it the pick ships as is (model@1 may ship dse); `want` below checks that pick
                assert got[0] <= oz[0] and got[1] <= oz[1], f"{name} shipped a larger object than -Oz on {t.id}"
            assert 1 <= r["evals"] <= 1 + samples * rounds  # -Oz + at most one opt run per sample and round
            want = _loop_directly(model, eval_model, bc, name, tmp_path / name / t.id)
            assert {"pass_list": "Oz", **r["oz"]} == want["oz"]
            assert r["chosen"] == want["chosen"], f"{name} on {t.id}"
            assert (r["evals"], r["model_calls"]) == (want["evals"], want["model_calls"])
            assert 1 <= r["model_calls"] <= rounds
            assert r["model"] == pytest.approx(want["model"])
            totals[name].update(want["model"])
            ratios[name].append(got[0] / oz[0])

    table = markdown_table(res.summary)
    for row in res.summary[:-1]:  # the last is the labels' reference row
        name, tot = row["method"], totals[row["method"]]
        assert row["available"] and row["modules"] == len(test) and row["errors"] == 0
        assert row["labelled_modules"] == len(test)
        assert row["evals_per_module"] == pytest.approx(sum(by[(name, t.id)]["evals"] for t in test) / len(test))
        gm = 1 - math.exp(sum(map(math.log, ratios[name])) / len(ratios[name]))
        assert row["text"]["geomean"] == pytest.approx(gm, abs=1e-9)
        if row["backup"]:
            assert row["text"]["regressed"] == 0 and row["text"]["geomean"] >= 0
        m = row["model"]
        assert m["candidates"] == tot["candidates"] >= len(test)  # the greedy answer at least, per module
        assert m["validity_rate"] == pytest.approx(tot["valid"] / tot["candidates"]) and 0 <= m["validity_rate"] <= 1
        for k, num, den in (("pred_exact_rate", "pred_exact", "pred_n"), ("pred_mae", "pred_abs_err", "pred_n"),
                            ("ir_parse_rate", "ir_parsed", "ir_n"), ("bleu", "bleu_sum", "bleu_n")):
            assert k in m and m[k] == (pytest.approx(tot[num] / tot[den]) if tot[den] else None), k
        assert m["pred_exact_rate"] is None or 0 <= m["pred_exact_rate"] <= 1
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {name} |"))
        assert f"| {m['validity_rate'] * 100:.1f}% |" in line


def test_rank_tries_the_lists_the_loop_ranks_highest(corpus: Path, tmp_path: Path) -> None:
    """rank@k with the shipped model: exactly the k stored lists the compile path's loop ranks
    first for this TU are tried (eval does not rank by itself); the record ships the best of
    those (with +backup, never larger than -Oz), as measured here independently."""
    from clang_llm import ir
    from clang_llm.config import Settings
    from clang_llm.model import load_model
    from clang_llm.optimizer.factory import default_model_dir
    from clang_llm.optimizer.loop import ModelLoop
    from clang_llm.optimizer.prompt import prompt_budgets

    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"]
    res = evaluate(["rank@2+backup"], test, jobs=1, progress=False, verify_each=False)
    assert not res.unavailable and all(r.status == "ok" for r in res.records), [r.reason for r in res.records]
    model = load_model(default_model_dir(), intra_threads=1)
    settings = Settings(rank=2, samples=0)
    for rec in res.records:
        task = next(t for t in test if t.id == rec.module)
        loop = ModelLoop(model, settings)
        first, _ = prompt_budgets(model.context_length, settings.max_new_tokens, model.card.prompt_budget)
        prompt = loop.format.build_prompt(str(ir.parse(Path(task.bc))), first, model.count_tokens)
        top = [a.pass_text for _, a in loop._ranked(prompt, set())]
        assert len(top) == 2
        sizes = {pl: _independent(corpus / f"{task.id}.c", Path(task.bc), pl, tmp_path) for pl in ["Oz", *top]}
        # opt runs: -Oz, the two lists, a base other than -Oz they continue from (once each), the
        # verified rerun of a winner
        other_bases = {t.split()[0] for t in top if t.split()[0] in ("Os", "O1", "O2") and len(t.split()) > 1}
        winner = rec.chosen is not None and rec.chosen.pass_list != "Oz"
        assert rec.evals == 3 + len(other_bases) + winner and rec.model is not None and rec.model.candidates == 2
        assert rec.chosen is not None and rec.chosen.pass_list in ["Oz", *top]
        shipped = (rec.chosen.text, rec.chosen.alloc, rec.chosen.count)
        assert shipped == sizes[rec.chosen.pass_list]
        eligible = [v for v in sizes.values() if v[0] <= sizes["Oz"][0] and v[1] <= sizes["Oz"][1]]
        assert shipped == min(eligible)  # the best of what was tried, -Oz as the backup


def test_eval_default_ships_what_the_driver_ships(winner: Path, state: Path, tmp_path: Path) -> None:
    """`eval -m default+backup` on a TU recorded from a real compile gives the object the
    compile shipped (same list, same sizes): eval decides through the driver's decision core.
    And it gains: base64.c is a TU the shipped model wins."""
    from conftest import run_wrapper

    from clang_llm.db import Database

    rec_dir = tmp_path / "recorded"
    env = {**os.environ, "CLANG_LLM_RECORD": str(rec_dir)}
    r = run_wrapper(["-c", winner.name, "-o", "b.o"], winner.parent, env=env)
    assert r.returncode == 0, r.stderr
    driver = Database(state).get_record(str((winner.parent / "b.o").resolve()))
    assert driver is not None and driver.optimized
    tasks = load_tasks(recordings=rec_dir)
    assert len(tasks) == 1
    res = evaluate(["default+backup"], tasks, jobs=1, progress=False, verify_each=False)
    (got,) = res.records
    assert got.status == "ok" and got.chosen is not None
    assert driver.chosen.sizes is not None and driver.oz.sizes is not None
    assert got.chosen.pass_list == driver.chosen.pass_list
    assert (got.chosen.text, got.chosen.alloc) == (driver.chosen.sizes.text, driver.chosen.sizes.alloc)
    assert got.chosen.text < driver.oz.sizes.text
    assert got.evals == driver.opt_evaluations


def test_replaying_builder_runs_each_list_once(corpus: Path, tmp_path: Path) -> None:
    from clang_llm.eval.run import ReplayingBuilder
    from clang_llm.passes import parse_pass_list

    calls = tmp_path / "opt-calls"
    spy = tmp_path / "opt-spy"
    spy.write_text(f'#!/bin/sh\necho x >> "{calls}"\nexec {OPT} "$@"\n')
    spy.chmod(0o755)
    b = ReplayingBuilder(CLANG, str(spy), [], "c", corpus / "x_dup.bc", tmp_path, 20.0)
    pl = parse_pass_list("Oz mergefunc")
    first = b.evaluate(pl)
    runs = len(calls.read_text().splitlines())
    again = b.evaluate(pl)
    assert len(calls.read_text().splitlines()) == runs  # replayed, opt not run again
    assert again is not first and again.sizes == first.sizes and again.count_after == first.count_after
    assert b.replayed_seconds == pytest.approx(first.seconds)
    again.count_after = -1  # a replay is a copy: changing it must not leak into the first
    assert b.evaluate(pl).count_after == first.count_after
    b.evaluate(pl, verify_each=False)  # a different opt command is a different evaluation
    assert len(calls.read_text().splitlines()) > runs


def test_unverified_eval_ships_only_what_verifies(corpus: Path, labels: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-verify screens like the driver and re-verifies the pick: the same choices as a fully
    verified run, and -Oz wherever the verified rerun of the pick fails."""
    from clang_llm.build.tubuilder import TUBuilder

    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"]
    methods = ["oz", "coreset@2+backup"]
    full = evaluate(methods, test, labels_path=labels, jobs=1, timeout=60, progress=False)
    fast = evaluate(methods, test, labels_path=labels, jobs=1, timeout=60, progress=False, verify_each=False)

    def picks(res: Any) -> dict[tuple[str, str], tuple[str, int, int]]:
        return {(r.method, r.module): (r.chosen.pass_list, r.chosen.text, r.chosen.alloc) for r in res.records}

    assert picks(fast) == picks(full)
    assert any(p != "Oz" for p, _, _ in picks(fast).values())  # something beyond -Oz was picked and kept
    real = TUBuilder._evaluate  # every opt run, whole or on the baseline's output

    def verifier_rejects(self: TUBuilder, pl: PassList, verify_each: bool, *rest: Any) -> Any:
        f = real(self, pl, verify_each, *rest)
        if verify_each and str(pl) != "Oz":
            f.valid, f.error_kind = False, "verify"
        return f

    monkeypatch.setattr(TUBuilder, "_evaluate", verifier_rejects)
    rejected = evaluate(methods, test, labels_path=labels, jobs=1, timeout=60, progress=False, verify_each=False)
    assert all(p == "Oz" for p, _, _ in picks(rejected).values())
    # Each refusal is recorded with the list it refused, and the table says how many there were.
    screened = {r.module: r.chosen.pass_list for r in fast.records if r.method == "coreset@2+backup"}
    refused = {r.module: r.refused for r in rejected.records if r.method == "coreset@2+backup"}
    assert refused == {m: (None if p == "Oz" else p) for m, p in screened.items()}
    n = sum(1 for p in refused.values() if p)
    summary = summarize(methods, rejected.records, [])
    assert markdown_table(summary).endswith(f"-Oz shipped: coreset@2+backup {n}.\n")


def test_every_model_method_is_keyed_by_its_model(tmp_path: Path) -> None:
    """A cached result of one model is never reused for another: each model method's cache key
    holds the model's identity (rank@k once lacked it and kept a replaced model's results)."""
    from clang_llm.eval.methods import MethodSetup, fingerprint

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    for name in ("model@1", "rank@4+backup", "rank@6s2+backup", "feedback-short@2+backup", "default+backup"):
        spec = parse_method(name)
        fa = fingerprint(spec, MethodSetup(coreset=["Oz mergefunc"], model_settings={"model": str(a)}))
        fb = fingerprint(spec, MethodSetup(coreset=["Oz mergefunc"], model_settings={"model": str(b)}))
        assert fa != fb, name
    coreset = parse_method("coreset@2+backup")  # not a model method: the model does not matter
    assert (fingerprint(coreset, MethodSetup(coreset=["O1"], model_settings={"model": str(a)}))
            == fingerprint(coreset, MethodSetup(coreset=["O1"], model_settings={"model": str(b)})))
