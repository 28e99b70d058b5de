"""The control case on real recorded TUs: with -Oz as its only candidate the wrapper's object is
byte for byte clang's own -Oz object (a sample of the held-out modules shipped in data/; the full
sweep is `clang-llm-tool control --index …`, see docs/architecture.md)."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest

from clang_llm.eval.control import check_module, summary
from clang_llm.train.autotune import load_index

ROOT = Path(__file__).resolve().parent.parent
PER_PACKAGE = 3  # modules of each source package in the sample (every C++ one is a package too)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of a few modules per package, with just their bitcode unpacked."""
    out = tmp_path_factory.mktemp("heldout")
    picked: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    with gzip.open(ROOT / "data" / "corpus-index.jsonl.gz", "rt") as f:
        for line in f:
            meta = json.loads(line)
            if meta.get("split") not in ("test", "validation"):
                continue
            key = f"{meta['package']}/{meta['lang']}"
            if seen.get(key, 0) < PER_PACKAGE:
                seen[key] = seen.get(key, 0) + 1
                picked.append(meta)
    names = {f"modules/{m['id']}.bc" for m in picked}
    with tarfile.open(ROOT / "data" / "modules-heldout.tar.xz") as tf:
        tf.extractall(out, members=[m for m in tf.getmembers() if m.name in names], filter="data")
    index = out / "index.jsonl.gz"
    with gzip.open(index, "wt") as f:
        f.writelines(json.dumps(m) + "\n" for m in picked)
    return index


def test_oz_baseline_is_clangs_object_on_recorded_tus(sample_index: Path) -> None:
    tasks = load_index(sample_index)
    assert len({t.package for t in tasks}) >= 8 and any(t.lang == "c++" for t in tasks)
    results = [check_module(t) for t in tasks]
    assert all(r.status == "identical" for r in results), summary(results) + "\n" + "\n".join(
        f"{r.id} {r.package}: {r.status} {r.detail}" for r in results if r.status != "identical")
