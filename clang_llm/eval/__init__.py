"""Benchmark harness: methods (oz, autotune@B, coreset@k, model@k, feedback-*@R) over modules,
a resumable results cache, and the report (markdown table, JSON, plots).

    from clang_llm.eval import evaluate, write_outputs
    res = evaluate(["oz", "coreset@4+backup", "autotune@8"], tasks, labels_path=..., cache_path=...)
    write_outputs(res, Path("eval-out"))
"""

from clang_llm.eval.methods import MethodSpec, parse_method
from clang_llm.eval.report import markdown_table, summarize, write_outputs
from clang_llm.eval.run import EvalResults, evaluate

__all__ = ["EvalResults", "MethodSpec", "evaluate", "markdown_table", "parse_method", "summarize", "write_outputs"]
