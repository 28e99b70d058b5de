"""`clang-llm-tool` as one typer application: every command's --help works on the base install
(torch, transformers, matplotlib and ray made unimportable), a command that needs an extra says
which one, and `eval --recordings` evaluates recordings, which carry no split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from clang_llm.cli import app

CLANG = "clang-22"
EXTRAS = ("torch", "transformers", "matplotlib", "ray")

# Runs in a fresh interpreter where the optional extras cannot be imported (sys.modules[m] = None
# makes both `import m` and importlib.util.find_spec(m) fail), then walks the command tree.
WALK = f"""
import json, sys
for m in {EXTRAS!r}:
    sys.modules[m] = None
import typer.main
from typer.testing import CliRunner
from clang_llm.cli import app

def paths(cmd, prefix):
    yield prefix
    for name, sub in sorted(getattr(cmd, "commands", {{}}).items()):
        yield from paths(sub, [*prefix, name])

root = typer.main.get_command(app)
runner = CliRunner()
out = {{}}
for p in paths(root, []):
    r = runner.invoke(app, [*p, "--help"])
    out[" ".join(p)] = [r.exit_code, r.output[:200], repr(r.exception) if r.exception else None]
r = runner.invoke(app, ["train", "--out", "m", "--examples", "e.jsonl", "--tokenizer", "t.json"])
out["<train without torch>"] = [r.exit_code, r.output, None]
leaked = sorted(m for m in ("torch", "transformers", "matplotlib", "ray") if sys.modules.get(m) is not None)
print(json.dumps({{"results": out, "leaked": leaked}}))
"""


def _walk() -> dict:
    res = subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_every_help_works_on_the_base_install() -> None:
    got = _walk()
    results = got["results"]
    commands = [k for k in results if not k.startswith("<")]
    # The tree really was walked: the top level and the nested groups' commands are all there.
    for expected in ("", "stats", "autotune", "eval", "train", "serve", "corpus index", "dataset info",
                     "daemon status"):
        assert expected in commands, sorted(commands)
    bad = {k: v for k, v in results.items() if not k.startswith("<") and v[0] != 0}
    assert not bad, bad
    assert got["leaked"] == []


def test_a_command_that_needs_an_extra_names_it() -> None:
    code, output, _ = _walk()["results"]["<train without torch>"]
    assert code == 2
    assert "pip install 'clang-llm[train]'" in output
    assert "torch" in output


def test_there_is_one_cli_package_and_no_argparse(tmp_path: Path) -> None:
    pkg = Path(__file__).resolve().parent.parent / "clang_llm"
    assert not list(pkg.glob("cli_*.py")) and not (pkg / "cli.py").exists()
    users = [p.relative_to(pkg) for p in pkg.rglob("*.py") if "argparse" in p.read_text()]
    assert users == [], users


def test_eval_on_recordings_without_split_evaluates_them(tmp_path: Path) -> None:
    """Recordings (CLANG_LLM_RECORD) have no split: eval takes them all instead of finding 0."""
    rec = tmp_path / "rec"
    rec.mkdir()
    for name, code in (("a", "int f(int x) { return x * 3 + 1; }\n"),
                       ("b", "int g(int *p, int n) { int s = 0; for (int i = 0; i < n; i++) s += p[i]; "
                             "return s; }\n")):
        src = rec / f"{name}.c"
        src.write_text(code)
        subprocess.run([CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o",
                        str(rec / f"{name}.bc")], check=True)
        (rec / f"{name}.json").write_text(json.dumps({"source": str(src), "lang": "c", "codegen_flags": []}))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "-m", "oz", "--recordings", str(rec), "--no-plots", "--out-dir", str(out),
                                 "--jobs", "1"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert [s["modules"] for s in summary] == [2]
    # And the split filter still applies when asked for: no recording is in "test".
    r = CliRunner().invoke(app, ["eval", "-m", "oz", "--recordings", str(rec), "--split", "test", "--no-plots",
                                 "--out-dir", str(tmp_path / "out2"), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert [s["modules"] for s in json.loads((tmp_path / "out2" / "results.json").read_text())["summary"]] == [0]


def test_data_commands_need_their_inputs_named() -> None:
    """No default that points at a folder a previous machine had."""
    r = CliRunner().invoke(app, ["dataset", "info"])
    assert r.exit_code != 0 and "--labels" in r.output
    r = CliRunner().invoke(app, ["eval", "-m", "oz"])
    assert r.exit_code != 0 and "--index or --recordings" in r.output
