"""Render a TU's decision record as a readable transcript (for `clang-llm-tool explain`)."""

from __future__ import annotations

from clang_llm.records import Finding, TURecord


def _sizes(f: Finding | None) -> str:
    if f is None or f.sizes is None:
        return "-"
    return f".text {f.sizes.text} B, allocated {f.sizes.alloc} B, {f.count_after} instructions"


def render_transcript(rec: TURecord) -> str:
    lines = [
        f"object   {rec.object}",
        f"source   {rec.source}",
        f"IR       {rec.count_before} instructions (hash {rec.ir_hash[:16]})" if rec.ir_hash
        else "IR       not built (--llm-off: clang compiled the TU at -Oz in one run)",
        f"model    {rec.model_id}  calls: {rec.model_calls}  cache hit: {rec.cache_hit}",
        f"-Oz      {_sizes(rec.oz)}",
    ]
    for i, rnd in enumerate(rec.rounds, 1):
        lines.append(f"--- round {i} ---")
        if rnd.prompt_tokens is not None:
            lines.append(f"prompt: {rnd.prompt_tokens} tokens")
        for j, c in enumerate(rnd.candidates, 1):
            f = c.finding
            lines.append(f"  candidate {j}: {c.pass_list or '(unparsed)'}")
            for p in c.problems:
                lines.append(f"    problem: {p}")
            err = (f.error or "")[:200]
            status = "valid" if f.valid else f"INVALID ({f.error_kind}: {err})"
            lines.append(f"    {status}; {_sizes(f)}")
            lines.append(f"    predicted count {c.prediction.count_before} -> {c.prediction.count_after}, "
                         f"real {f.count_before} -> {f.count_after}")
        if rnd.feedback:
            lines.append("  feedback to the model:")
            lines += [f"    {ln}" for ln in rnd.feedback.splitlines()]
        for k, v in (("cache", rnd.cache), ("pass_list", rnd.pass_list), ("error", rnd.error)):
            if v is not None:
                lines.append(f"  {k}: {v}")
    lines.append(f"chosen   {rec.chosen.pass_list}: {_sizes(rec.chosen)}")
    lines.append(f"reason   {rec.reason}")
    if rec.seconds:
        lines.append(f"time     {rec.seconds} s")
    return "\n".join(lines)
