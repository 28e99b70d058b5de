"""The shipped default model: present in the package, loadable without torch, and what
`CC=clang-llm` uses when nothing else is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import SAMPLE_C, run_clang

from clang_llm.db import Database
from clang_llm.model import load_model, read_card
from clang_llm.objsize import object_sizes
from clang_llm.optimizer.factory import default_model_dir
from clang_llm.passes import Vocabulary


def test_default_model_ships_with_its_card() -> None:
    d = default_model_dir()
    assert (d / "model.bin").is_file() and (d / "tokenizer.json").is_file()
    card = read_card(d)
    assert card.llvm_major == 22 and card.pass_vocabulary_version == Vocabulary.default().version
    assert sum(p.stat().st_size for p in d.iterdir()) < 50 * 1024 * 1024
    code = ("import sys; from clang_llm.model import load_model; from clang_llm.optimizer.factory import "
            "default_model_dir; load_model(default_model_dir()); assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plain_cc_uses_the_default_model(state: Path, tmp_path: Path) -> None:
    (tmp_path / "prog.c").write_text(SAMPLE_C)
    env = {k: v for k, v in os.environ.items() if k != "CLANG_LLM_MODEL"}
    r = subprocess.run([sys.executable, "-c", "from clang_llm.driver.main import main_c; main_c()", "-O2", "-c",
                        "prog.c", "-o", "w.o"], cwd=tmp_path, env=env, capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
    rec = Database(state).get_record(str(tmp_path / "w.o"))
    assert rec is not None and rec.model_id == load_model(default_model_dir()).id
    assert rec.model_calls == 1 and rec.rounds[0].candidates
    assert run_clang(["-O2", "-Oz", "-c", "prog.c", "-o", "r.o"], tmp_path).returncode == 0
    ours, oz = object_sizes(tmp_path / "w.o"), object_sizes(tmp_path / "r.o")
    assert ours.text <= oz.text and ours.alloc <= oz.alloc
