"""csmith hygiene: a program that does not run to its checksum within the time limit is dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clang_llm.train.csmith_check import CsmithCheck, check_all, check_source, csmith_seeds, nonterminating

PRINTS = '#include <stdio.h>\nint main(void) { printf("checksum = %X\\n", 0xBEEFu); return 0; }\n'
LOOPS = '#include <stdio.h>\nint main(void) { volatile int x = 0; for (;;) x++; printf("checksum = 1\\n"); }\n'
CRASHES = "int main(void) { volatile int *p = 0; return *p; }\n"


@pytest.mark.parametrize(("code", "status", "dropped"), [(PRINTS, "terminates", False), (LOOPS, "timeout", True),
                                                        (CRASHES, "crash", True)])
def test_a_program_that_does_not_finish_is_dropped(tmp_path: Path, code: str, status: str, dropped: bool) -> None:
    src = tmp_path / "p.c"
    src.write_text(code)
    c = check_source(7, src, tmp_path, timeout_s=1.0, work=tmp_path)
    assert c.status == status and c.dropped is dropped
    if status == "terminates":
        assert c.checksum == "BEEF"


def test_csmith_seeds_come_from_the_index_and_results_resume(tmp_path: Path) -> None:
    rows = [{"package": "csmith-test", "file": "1001", "split": "test"}, {"package": "zstd", "file": "x.c"},
            {"package": "csmith", "file": "12", "split": "train"}]
    assert list(csmith_seeds(rows)) == [(1001, "test"), (12, "train")]
    out = tmp_path / "checks.jsonl"
    out.write_text('{"seed": 5, "status": "timeout", "seconds": 10.0, "checksum": ""}\n{"seed": 6, "sta')
    assert nonterminating(out) == {5}  # a torn last line is skipped
    if shutil.which("csmith") is None:
        pytest.skip("csmith not installed")
    from clang_llm.train.csmith import csmith_include_dir

    counts = check_all([5, 11], out, csmith_include_dir(), timeout_s=10.0, jobs=1, progress=False)
    assert counts.get("timeout") == 1 and sum(counts.values()) == 2  # seed 5 from the file, 11 run now
    assert CsmithCheck(seed=5, status="timeout").dropped
