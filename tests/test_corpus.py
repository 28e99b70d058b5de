"""Corpus building: dedup by normalized IR, dropped modules, and the split-by-package rule.

Recordings are made here with clang-22 directly (the same files the wrapper's
CLANG_LLM_RECORD mode writes), so no wrapper or model is needed; runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clang_llm.train import corpus
from clang_llm.train.build_packages import META_FILE, RESERVED_PACKAGES, load_recipes
from clang_llm.train.csmith import VALIDATION_FIRST_SEED, is_test_seed, seed_split

CLANG = shutil.which("clang-22")
pytestmark = pytest.mark.skipif(CLANG is None, reason="clang-22 not installed")

SUM_C = """
/* the original */
int sum(int *a, int n) {
  int s = 0;
  for (int i = 0; i < n; i++) s += a[i];
  return s;
}
"""
# Same code, different comments and whitespace (and a different file name).
SUM_DUP_C = """// a copy with other comments
int   sum(int *a,
          int n)
{ int s = 0;   /* accumulate */
  for (int i = 0; i < n; i++)
      s += a[i];
  return s; }
"""
DECL_ONLY_C = "extern int g(int);\nextern int table[4];\n"
MAX_C = 'int max(int a, int b) { return a > b ? a : b; }\nconst char *msg(void) { return "a;b"; }\n'
PROBE_C = "int main(void) { return 0; }\n"

RECIPES = """
[defaults]
jobs = 1
[[package]]
name = "alpha"
build = "make"
split = "train"
[[package]]
name = "beta"
build = "make"
split = "test"
[[package]]
name = "gamma"
build = "cmake"
split = "validation"
"""


def _record(record_dir: Path, src_dir: Path, name: str, code: str) -> None:
    """Write one recording pair exactly as CLANG_LLM_RECORD does (json + unoptimized .bc)."""
    record_dir.mkdir(parents=True, exist_ok=True)
    src = src_dir / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(code)
    stem = f"{Path(name).name}.{hashlib.sha256(code.encode()).hexdigest()[:12]}"
    bc = record_dir / f"{stem}.bc"
    argv = [CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o", str(bc)]
    subprocess.run(argv, check=True, capture_output=True)
    meta = {
        "source": str(src),
        "cwd": str(src_dir),
        "output": str(src.with_suffix(".o")),
        "lang": "c",
        "argv": argv,
        "ir_sha256": hashlib.sha256(bc.read_bytes()).hexdigest(),
    }
    (record_dir / f"{stem}.json").write_text(json.dumps(meta))


def _package(root: Path, package: str, files: dict[str, str]) -> Path:
    rdir = root / "record" / package
    src_dir = root / "src" / f"{package}-1.0"
    for name, code in files.items():
        _record(rdir, src_dir, name, code)
    (rdir / META_FILE).write_text(json.dumps({"package": package, "version": "1.0-1", "src_dir": str(src_dir)}))
    return rdir


@pytest.fixture()
def built(tmp_path: Path) -> tuple[dict, Path]:
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(RECIPES)
    dirs = [
        _package(
            tmp_path,
            "alpha",
            {"sum.c": SUM_C, "sum_copy.c": SUM_DUP_C, "decl.c": DECL_ONLY_C, "max.c": MAX_C, "conftest.c": PROBE_C},
        ),
        # beta (test) also contains max.c: the test copy must win, train must lose it.
        _package(tmp_path, "beta", {"lib/max.c": MAX_C, "lib/sum2.c": SUM_C.replace("sum", "total")}),
    ]
    out = tmp_path / "out"
    summary = corpus.build_corpus(dirs, out, recipes_file=recipes, jobs=1)
    return summary, out


def test_dedup_drop_and_split_by_package(built: tuple[dict, Path]) -> None:
    summary, out = built
    rows = corpus.read_index(out)
    by_pkg = {}
    for r in rows:
        by_pkg.setdefault(r["package"], []).append(r)
        assert (out / "modules" / f"{r['id']}.bc").is_file()
        assert r["instructions"] > 0 and r["functions"] > 0
    # alpha: sum.c and its comment/whitespace copy collapse to one; decl.c, the probe and
    # max.c (kept by the test package) are gone.
    assert [r["file"] for r in by_pkg["alpha"]] == ["sum.c"]  # first in (package, file) order wins
    assert sorted(r["file"] for r in by_pkg["beta"]) == ["lib/max.c", "lib/sum2.c"]
    assert summary["dropped"]["no function definitions"] == 1
    assert summary["dropped"]["build-system probe"] == 1
    assert summary["dropped"]["duplicate"] == 2
    assert summary["cross_split_duplicates_dropped"] == 1
    # Split by package: every module of a package has the package's split.
    assert {r["split"] for r in by_pkg["alpha"]} == {"train"}
    assert {r["split"] for r in by_pkg["beta"]} == {"test"}
    assert len({r["norm_sha256"] for r in rows}) == len(rows)
    assert rows[0]["version"] == "1.0-1"


def test_corpus_info(built: tuple[dict, Path]) -> None:
    _, out = built
    info = corpus.corpus_info(out)
    assert info["modules_per_split"] == {"train": 1, "validation": 0, "test": 2}
    assert info["packages_per_split"] == {"train": 1, "validation": 0, "test": 1}
    assert info["package_names"]["test"] == ["beta"]


def test_normalize_ignores_comments_metadata_and_names() -> None:
    a = (
        '; ModuleID = \'x.c\'\nsource_filename = "x.c"\n@s = constant [4 x i8] c"a;b\\00"\n'
        "define i32 @f() #0 {\n  %1 = load i32, ptr @g, align 4, !tbaa !5  ; comment\n  ret i32 %1\n}\n"
        "attributes #0 = { minsize }\n!5 = !{}\n"
    )
    b = (
        'source_filename = "other/y.c"\n@s   = constant [4 x i8] c"a;b\\00"\n'
        "define i32 @f() #0 {\n  %1 = load i32, ptr @g, align 4\n  ret i32 %1\n}\n"
        'attributes #0 = { minsize "target-cpu"="x86-64" }\n'
    )
    assert corpus.normalize_ir(a) == corpus.normalize_ir(b)
    assert 'c"a;b\\00"' in corpus.normalize_ir(a)  # a ';' inside a string is not a comment
    assert corpus.normalized_hash(a) != corpus.normalized_hash(b.replace("load i32", "load i16"))


# The csmith-test slice, pinned (computed once from the rule): a changed rule would silently move
# programs between test and train, so it must turn this red.
CSMITH_TEST_SEEDS_1_200 = [12, 13, 21, 23, 34, 47, 53, 86, 87, 92, 95, 96, 98, 114, 121, 122, 124, 137, 160,
                           167, 173, 184, 189, 190, 191]
CSMITH_TEST_SEEDS_1_5000 = 525


def test_csmith_test_slice_is_fixed_and_about_ten_percent() -> None:
    assert [s for s in range(1, 201) if is_test_seed(s)] == CSMITH_TEST_SEEDS_1_200
    picked = [s for s in range(1, 5001) if is_test_seed(s)]
    assert len(picked) == CSMITH_TEST_SEEDS_1_5000
    share = sum(is_test_seed(s) for s in range(5001, 50_001)) / 45_000  # beyond the pinned seeds: ~10 % too
    assert 0.095 < share < 0.105


def test_csmith_validation_seeds_move_no_train_or_test_program() -> None:
    """The validation range lies above every seed the corpus used before it existed (1..5000),
    so no program a shipped model trained or was tested on changes split."""
    assert all(seed_split(s) == (("csmith-test", "test") if is_test_seed(s) else ("csmith", "train"))
               for s in range(1, 5001))
    assert seed_split(VALIDATION_FIRST_SEED) == ("csmith-validation", "validation")
    assert {seed_split(s)[1] for s in range(VALIDATION_FIRST_SEED, VALIDATION_FIRST_SEED + 500)} == {"validation"}


def test_shipped_recipes_respect_reserved_and_test_packages() -> None:
    _, recipes = load_recipes()
    assert not RESERVED_PACKAGES & set(recipes)
    for name in ("lz4", "libjsoncpp", "libyaml"):
        assert recipes[name].split == "test"
    assert len(recipes) >= 25
