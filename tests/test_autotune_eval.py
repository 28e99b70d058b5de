"""Autotuner, dataset info, eval harness and screening on tiny modules, checked against an
independent measurement: our own opt-22 / clang-22 runs, llvmlite counts, pyelftools sizes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import llvmlite.binding as llvm
import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from clang_llm.eval import evaluate, markdown_table, parse_method, write_outputs
from clang_llm.eval.methods import MethodError
from clang_llm.eval.report import package_table
from clang_llm.passes import PassList, Vocabulary
from clang_llm.train.autotune import AutotuneConfig, autotune, load_tasks, read_labels
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

def _text_bytes(obj: Path) -> tuple[int, int]:
    text = alloc = 0
    with open(obj, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if s["sh_flags"] & SH_FLAGS.SHF_ALLOC:
                alloc += s["sh_size"]
                if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                    text += s["sh_size"]
    return text, alloc


def _count(bc: Path) -> int:
    mod = llvm.parse_bitcode(bc.read_bytes())
    return sum(len(list(b.instructions)) for fn in mod.functions if not fn.is_declaration for b in fn.blocks)


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


def test_autotune_resumes(corpus: Path, labels: Path, tmp_path: Path) -> None:
    tasks = load_tasks(recordings=corpus)
    seen: list[str] = []
    summary = autotune(tasks, labels, AutotuneConfig(budget=4), jobs=1, progress=False,
                       on_record=lambda r: seen.append(r["id"]))
    assert summary.already_done == 4 and summary.done_now == 0 and not seen
    # A file with one record and a torn tail: the torn part is dropped, the other modules run.
    partial = tmp_path / "partial.jsonl.gz"
    partial.write_bytes(labels.read_bytes()[:-7])
    summary = autotune(tasks[:2], partial, AutotuneConfig(budget=2), jobs=1, progress=False,
                       on_record=lambda r: seen.append(r["id"]))
    assert summary.already_done + summary.done_now == 2
    assert len(read_labels(partial)) >= 2


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
    assert [r["method"] for r in res.summary] == methods
    assert "Oz mergefunc" in res.setup["coreset"]  # the train winner
    by = {(r["method"], r["module"]): r for r in res.records}
    assert len(by) == 6
    for row in res.summary:
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
    from clang_llm.train.screen import ScreenConfig, run_screen

    out = tmp_path / "screen-report.json"
    rep = run_screen(labels, ["Oz gvn-sink"], ScreenConfig(programs=1, pipelines=1, jobs=1), out, progress=False)
    data = json.loads(out.read_text())
    assert data["programs"][0]["seed"] == 900_001 and "Oz gvn-sink" in data["pipelines"]
    used = sum(p["used"] for p in rep.programs)
    assert rep.checks == used * len(rep.pipelines)
    assert rep.outcomes.get("wrong", 0) == len([f for f in rep.failures if f["outcome"] == "wrong"])


def test_model_adapter_metrics(corpus: Path, labels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model methods through a stand-in ModelLoop: chosen list, evals and model metrics."""
    from clang_llm.eval import methods
    from clang_llm.optimizer.base import Decision, Finding, TUContext, select_best
    from clang_llm.passes import parse_pass_list

    class FakeLoop:
        def __init__(self, model: object, settings: object) -> None:
            self.settings = settings

        def optimize(self, tu: TUContext) -> Decision:
            good = tu.evaluate(parse_pass_list("Oz mergefunc"))
            good.predicted_after = good.count_after  # an exact prediction
            bad = Finding(pass_list="Oz not-a-pass", valid=False, error_kind="unknown-pass")
            good.generated_ir_parses, good.bleu = True, 0.5
            chosen, reason = select_best(tu.oz, [good])
            cands = [{"finding": good.to_json()}, {"finding": bad.to_json()}]
            return Decision(chosen=chosen, reason=reason, rounds=[{"round": 1, "candidates": cands}])

    monkeypatch.setattr(methods, "model_loop_class", lambda: FakeLoop)
    monkeypatch.setattr(methods, "load_model_cached", lambda *a, **k: object())
    import clang_llm.eval.run as run_mod

    monkeypatch.setattr(run_mod, "model_loop_class", lambda: FakeLoop)
    monkeypatch.setattr(run_mod, "load_model_cached", lambda *a, **k: object())
    test = [t for t in load_tasks(recordings=corpus) if t.split == "test"]
    res = evaluate(["model@2+backup", "feedback-short@2"], test, labels_path=labels, jobs=1, progress=False)
    for row in res.summary:
        assert row["available"] and row["modules"] == 2
        assert row["evals_per_module"] == 2.0  # -Oz + one distinct list
        m = row["model"]
        assert m["validity_rate"] == 0.5 and m["pred_exact_rate"] == 1.0 and m["pred_mae"] == 0.0
        assert m["ir_parse_rate"] == 1.0 and m["bleu"] == pytest.approx(0.5)
        assert row["text"]["geomean"] > 0  # mergefunc wins on x_dup


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
    again.predicted_after = 1  # the loop annotates findings: a replay must not leak into the first
    assert b.evaluate(pl).predicted_after is None
    b.evaluate(pl, verify_each=False)  # a different opt command is a different evaluation
    assert len(calls.read_text().splitlines()) > runs
