"""`opt-llm in.ll -o out.ll`: IR in, optimized IR out — the same optimizer loop, without a C front end.

Candidates are scored on the object clang-22 would build from them for the host target (`-Oz`
codegen), exactly as in the compiler wrapper. Whatever goes wrong, the result is `opt -passes=
default<Oz>`'s output, and opt's own error and exit code for invalid input.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from clang_llm.clang_args import split_llm_flags
from clang_llm.config import load_settings
from clang_llm.logs import setup_logging

log = logging.getLogger("clang_llm")


def _optimize(src: Path, out: Path, text_output: bool, flags: dict[str, str]) -> str:
    from clang_llm import ir
    from clang_llm.atomic import atomic_copy
    from clang_llm.build.tubuilder import TUBuilder
    from clang_llm.optimizer.base import TUContext
    from clang_llm.optimizer.factory import make_optimizer
    from clang_llm.passes import OZ
    from clang_llm.toolchain import Toolchain, run

    settings = load_settings({k.replace("-", "_"): v for k, v in flags.items()})
    tc = Toolchain.discover()
    with tempfile.TemporaryDirectory(prefix="opt-llm-") as tmp:
        work = Path(tmp)
        in_bc = work / "in.bc"
        res = run([tc.opt, src, "-o", in_bc], timeout=settings.opt_timeout)  # parse + verify once
        if res.returncode != 0:
            raise RuntimeError(res.stderr.decode(errors="replace"))
        b = TUBuilder(tc.clang, tc.opt, [], "c", in_bc, work, settings.opt_timeout)
        module = ir.parse(in_bc)
        b.count_before = ir.count_instructions(module)
        oz = b.evaluate(OZ, verify_each=False)
        if not oz.valid:
            raise RuntimeError(oz.error or "opt failed")
        tu = TUContext(ir_path=in_bc, ir_text=str(module), count_before=b.count_before, baseline=oz,
                       evaluate=b.evaluate, settings=settings, source=str(src))
        decision = make_optimizer(settings).optimize(tu)
        chosen = decision.chosen if decision.chosen.valid and decision.chosen.ir_path else oz
        assert chosen.ir_path is not None
        final = chosen.ir_path
        if text_output:
            final = work / "out.ll"
            run([tc.opt, chosen.ir_path, "-S", "-passes=verify", "-o", final], timeout=settings.opt_timeout)
        atomic_copy(final, out)
        return chosen.pass_list


def main() -> None:
    args, flags = split_llm_flags(sys.argv[1:])
    try:
        setup_logging(load_settings())
    except Exception:
        logging.getLogger("clang_llm").addHandler(logging.NullHandler())
    parser = typer.Typer(add_completion=False)

    @parser.command()
    def run_opt(
        input: Path,
        output: Path = typer.Option(..., "-o", help="Output file (.ll → text, else bitcode)"),
        text: bool = typer.Option(False, "-S", help="Write textual IR"),
    ) -> None:
        """Optimize an IR module with the pass list clang-llm chooses; --llm-* flags as for clang-llm."""
        try:
            _optimize(input, output, text or output.suffix == ".ll", flags)
        except Exception as e:
            log.warning("opt-llm falls back to default<Oz>: %s", e)
            opt = shutil.which("opt-22") or "opt-22"
            cmd = [opt, "-passes=default<Oz>", str(input), "-o", str(output)] + (["-S"] if text else [])
            raise typer.Exit(subprocess.run(cmd, check=False).returncode) from None

    sys.argv = [sys.argv[0], *args]
    parser()
