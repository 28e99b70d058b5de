"""A candidate that extends the -Oz baseline runs only its own passes on the baseline's output:
the same optimized module and the byte-identical object as a whole run from the source IR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.passes import OZ, parse_pass_list
from clang_llm.toolchain import Toolchain

SOURCE = ("int t[16]; int f(int n) { int s = 0; for (int i = 0; i < n; i++) { if (i & 1) s += t[i & 15];"
          " else s -= i * 3; } return s; }\nint g(int x) { switch (x) { case 1: return 4; case 2: return 9;"
          " case 3: return f(x); default: return f(x + 1) * 2; } }\n")
LISTS = ["Oz gvn-sink", "Oz simplifycfg<hoist-common-insts;sink-common-insts> loop-reduce early-cse",
         "Oz ipsccp globalopt", "Oz dse loop-deletion", "O1 gvn-sink", "Oz", "Os loop-deletion gvn-sink",
         "Os globalopt", "O2 dse", "Oz gvn-sink O1"]


def _builder(tmp: Path, name: str) -> TUBuilder:
    src, bc = tmp / "m.c", tmp / "m.bc"
    if not bc.exists():
        src.write_text(SOURCE)
        subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o",
                        str(bc)], check=True)
    tc = Toolchain.discover()
    (tmp / name).mkdir()
    b = TUBuilder(tc.compiler(False), tc.opt, [], "c", bc, tmp / name, 30)
    b.count_before = ir.count_file(bc)
    return b


def test_extensions_of_a_base_match_whole_runs_byte_for_byte(tmp_path: Path) -> None:
    """Lists on -Oz continue from the baseline, lists on -Os, -O1, -O2 from that base's output
    (one opt run per base and TU); a list with two bases runs whole. Every object is the whole
    run's, byte for byte."""
    inc, whole = _builder(tmp_path, "inc"), _builder(tmp_path, "whole")
    oz = inc.evaluate(OZ, verify_each=False)
    for text in LISTS:
        pl = parse_pass_list(text)
        a = inc.evaluate_after(oz, pl)
        b = whole.evaluate(pl, verify_each=True)
        assert a.valid and b.valid and a.pass_list == b.pass_list == text
        assert a.count_after == b.count_after and a.sizes == b.sizes
        assert a.object_path is not None and b.object_path is not None
        assert a.object_path.read_bytes() == b.object_path.read_bytes(), text
        assert not a.verified  # a screening run: the shipped list is re-run with -verify-each
    # the baseline, each list once, and one run for each of the other bases (O1, Os, O2)
    assert inc.opt_runs == 1 + len(LISTS) + 3


def test_a_failed_baseline_runs_whole(tmp_path: Path) -> None:
    b = _builder(tmp_path, "w")
    oz = b.evaluate(OZ, verify_each=False)
    oz.ir_path.unlink()  # the baseline's output is gone: nothing to extend
    f = b.evaluate_after(oz, parse_pass_list("Oz gvn-sink"))
    g = b.evaluate(parse_pass_list("Oz gvn-sink"), verify_each=False)
    assert f.valid and f.sizes == g.sizes and f.object_path.read_bytes() == g.object_path.read_bytes()


def test_a_list_that_leaves_the_ir_as_another_did_costs_no_codegen(tmp_path: Path) -> None:
    """Unverified runs are memoized by the optimized module's text: identical IR, the same
    object (byte for byte what its own codegen would give), one codegen."""
    b = _builder(tmp_path, "w")
    oz = b.evaluate(OZ, verify_each=False)
    again = b.evaluate_after(oz, parse_pass_list("Oz globaldce"))  # -Oz left nothing dead
    whole = _builder(tmp_path, "whole").evaluate(parse_pass_list("Oz globaldce"), verify_each=True)
    assert b.codegen_skipped == 1 and again.object_path == oz.object_path
    assert again.sizes == whole.sizes and again.count_after == whole.count_after
    assert again.object_path.read_bytes() == whole.object_path.read_bytes()
    other = b.evaluate_after(oz, parse_pass_list("Oz loop-deletion"))  # rewrites the loops' exits
    assert other.object_path != oz.object_path and b.codegen_skipped == 1  # its own codegen


def test_a_verified_rerun_that_builds_another_object_ships_it_only_within_the_limit(tmp_path: Path) -> None:
    """When the screened object and the verified run's differ, the verified object ships if it is
    not larger than the -Oz object; above it, the pick is refused."""
    from dataclasses import replace

    from clang_llm.objsize import Sizes
    from clang_llm.records import Finding

    b = _builder(tmp_path, "v")
    oz = b.evaluate(OZ, verify_each=False)
    screened = b.evaluate_after(oz, parse_pass_list("Oz gvn-sink"))
    assert screened.object_path is not None and screened.sizes is not None
    other = tmp_path / "other.o"  # what a screening that differs from the whole run leaves behind
    other.write_bytes(screened.object_path.read_bytes() + b"\0")
    differs = replace(screened, object_path=other)
    smaller_oz = replace(oz, sizes=Sizes(screened.sizes.text - 1, screened.sizes.alloc))
    assert b.verified(differs, smaller_oz) == "other-object"
    got = b.verified(differs, replace(oz, sizes=screened.sizes))
    assert isinstance(got, Finding) and got.verified and got.object_path is not None
    assert got.object_path.read_bytes() == screened.object_path.read_bytes()  # the verified run's own object
    assert b.verified(screened, oz) is not screened and isinstance(b.verified(screened, oz), Finding)  # same bytes


def test_the_verified_rerun_verifies_the_lists_own_passes_on_its_bases_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rerun of `Oz X` is `opt -verify-each -passes=X` on the baseline's output (clang's own
    -Oz pipeline is not verified pass by pass, as `clang -Oz -c` does not); a list on another
    base runs whole, verified, from the source IR."""
    from clang_llm.build import tubuilder

    b = _builder(tmp_path, "vr")
    oz = b.evaluate(OZ, verify_each=False)
    screened = b.evaluate_after(oz, parse_pass_list("Oz loop-deletion"))
    seen: list[list[str]] = []
    real = tubuilder.run

    def spy(cmd: list, **kw: object) -> object:
        seen.append([str(c) for c in cmd])
        return real(cmd, **kw)

    monkeypatch.setattr(tubuilder, "run", spy)
    got = b.verified(screened, oz)
    assert isinstance(got, tubuilder.Finding) and got.verified
    opt_runs = [c for c in seen if "-passes=" in " ".join(c)]
    assert len(opt_runs) == 1 and "-verify-each" in opt_runs[0]
    assert str(oz.ir_path) in opt_runs[0] and str(b.in_bc) not in opt_runs[0]
    assert not any("default<Oz>" in c or "<Oz>" in c for c in opt_runs[0] if c.startswith("-passes="))
    o1 = b.evaluate_after(oz, parse_pass_list("O1 loop-deletion"))  # -O1's output is kept for it
    seen.clear()
    assert isinstance(b.verified(o1, oz), tubuilder.Finding)
    (rerun,) = [c for c in seen if any(a.startswith("-passes=") for a in c)]
    assert "-verify-each" in rerun and str(b.in_bc) not in rerun and "-passes=function(loop(loop-deletion))" in rerun
    seen.clear()
    two = b.evaluate_after(oz, parse_pass_list("Oz loop-deletion O1"))  # two bases: runs whole
    assert isinstance(b.verified(two, oz), tubuilder.Finding)
    assert [c for c in seen if str(b.in_bc) in c and "-verify-each" in c]
