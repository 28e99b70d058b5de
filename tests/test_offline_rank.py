"""Offline scoring of ranking methods on a pool sweep: the driver's rule (never larger than -Oz
in .text or allocated bytes), the model's order, and the share of the autotuner's gain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clang_llm.eval.offline import offline_rows
from clang_llm.records import LabelRecord, ListResult, ObjectSize
from clang_llm.train.pool_sweep import PoolSizes, pool_sha, read_sweep

POOL = ["Oz", "A", "B", "C"]


def _sweep(mid: str, oz: int, sizes: list[tuple[int, int] | None]) -> PoolSizes:
    return PoolSizes(mid, pool_sha(POOL), ObjectSize(oz, 100, 10),
                     tuple(None if s is None else ObjectSize(s[0], s[1], 10) for s in sizes))


def test_rank_and_coreset_rows_follow_the_drivers_rule() -> None:
    sweep = {
        # A shrinks .text but grows allocated bytes: never shipped; C is the real winner
        "m1": _sweep("m1", 100, [(100, 100), (80, 120), (95, 100), (90, 100)]),
        "m2": _sweep("m2", 200, [(200, 100), (190, 100), None, (210, 100)]),
    }
    scores = {"m1": [0.0, -1.0, -3.0, -2.0], "m2": [0.0, -5.0, -1.0, -4.0]}
    labels = {m: LabelRecord(id=m, oz=ObjectSize(s.oz.text, 100, 10), best=ListResult("X", t, 100, 9))
              for (m, s), t in zip(sweep.items(), (90, 180), strict=True)}
    rows = {r.method: r for r in offline_rows(sweep, POOL, scores, labels, {"m1": "csmith", "m2": "pkg"}, [1, 2])}
    # rank@1: m1's best-scored non-Oz list is A (alloc too large: -Oz ships), m2's is B (failed: -Oz)
    assert rows["rank@1+backup"].text_gain == pytest.approx(0.0)
    # rank@2: m1 tries A and C (C ships, 90/100), m2 tries B and C (C is larger: -Oz)
    assert rows["rank@2+backup"].text_gain == pytest.approx(1 - (0.9 * 1.0) ** 0.5)
    # coreset@1 is A everywhere: m1 -Oz (alloc), m2 A (190/200)
    assert rows["coreset@1+backup"].text_gain == pytest.approx(1 - (1.0 * 0.95) ** 0.5)
    assert rows["coreset@1+backup"].package_gain == pytest.approx(0.05)
    assert rows["coreset@2+backup"].evals == 3
    every = rows["pool@3+backup (every stored list)"]
    assert every.text_gain == pytest.approx(1 - (0.9 * 0.95) ** 0.5)
    auto = rows["autotuner (labels)"]
    assert auto.text_gain == pytest.approx(1 - (0.9 * 0.9) ** 0.5)
    assert every.share_of_autotuner == pytest.approx(every.text_gain / auto.text_gain)


def test_sweep_file_round_trip_skips_torn_lines_and_other_pools(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    good = _sweep("m1", 100, [(100, 100), (90, 100), None, (95, 100)])
    other = PoolSizes("m2", pool_sha(["Oz", "Z"]), ObjectSize(5, 5, 5), (ObjectSize(5, 5, 5),) * 2)
    died = PoolSizes("m3", pool_sha(POOL), None, status="error", error="worker died")
    path.write_text("\n".join(json.dumps(r.to_json()) for r in (good, other, died)) + '\n{"id": "m4", "po')
    got = read_sweep(path, POOL)
    assert list(got) == ["m1"] and got["m1"] == good


def test_sweep_sizes_equal_whole_runs_from_the_source(tmp_path: Path) -> None:
    """The sweep's incremental, unverified evaluation measures what a whole opt run from the
    source IR with -verify-each and clang's codegen measure."""
    import subprocess

    from clang_llm import ir
    from clang_llm.build.tubuilder import TUBuilder
    from clang_llm.passes import parse_pass_list
    from clang_llm.toolchain import Toolchain
    from clang_llm.train.autotune import ModuleTask
    from clang_llm.train.pool_sweep import sweep_module

    src = tmp_path / "m.c"
    src.write_text("int t[8]; int f(int n) { int s = 0; for (int i = 0; i < n; i++) { if (i & 1) s += t[i & 7];"
                   " else s -= i; } return s; }\nint g(int x) { switch (x) { case 1: return 4; case 2: return 9;"
                   " case 3: return f(x); default: return 0; } }\n")
    bc = tmp_path / "m.bc"
    subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o",
                    str(bc)], check=True)
    pool = ["Oz", "Oz gvn-sink", "O1", "Oz simplifycfg<hoist-common-insts;sink-common-insts> loop-reduce",
            "Os globalopt"]
    rec = sweep_module(ModuleTask(id="m", bc=str(bc)), pool)
    assert rec.status == "ok" and len(rec.sizes) == len(pool)
    tc = Toolchain.discover()
    b = TUBuilder(tc.compiler(False), tc.opt, [], "c", bc, tmp_path / "w", 30)
    (tmp_path / "w").mkdir()
    b.count_before = ir.count_file(bc)
    for text, got in zip(pool, rec.sizes, strict=True):
        f = b.evaluate(parse_pass_list(text), verify_each=True)
        assert got is not None and f.sizes is not None
        assert (got.text, got.alloc, got.count) == (f.sizes.text, f.sizes.alloc, f.count_after), text


def test_likeliest_choice_row_is_model_at_1_with_oz_a_choice_and_no_backup() -> None:
    sweep = {"m1": _sweep("m1", 100, [(100, 100), (80, 120), (95, 100), (90, 100)]),
             "m2": _sweep("m2", 200, [(200, 100), (190, 100), None, (210, 100)])}
    labels: dict[str, LabelRecord] = {}
    row = "likeliest choice (Oz included)"
    # m1 believes most in C (90/100 ships); m2 in Oz itself: -Oz ships
    got = {r.method: r for r in offline_rows(sweep, POOL, {"m1": [-2.0, -3.0, -4.0, -1.0],
                                                            "m2": [-1.0, -2.0, -3.0, -4.0]}, labels, {}, [1])}
    assert got[row].text_gain == pytest.approx(1 - 0.9 ** 0.5)
    # no backup: m2's likeliest C grows .text (210/200) and ships anyway
    got = {r.method: r for r in offline_rows(sweep, POOL, {"m1": [-2.0, -3.0, -4.0, -1.0],
                                                            "m2": [-2.0, -3.0, -4.0, -1.0]}, labels, {}, [1])}
    assert got[row].text_gain == pytest.approx(1 - (0.9 * 1.05) ** 0.5)
