"""Render a TU's decision record as a readable transcript (for `clang-llm-tool explain`)."""

from __future__ import annotations

from typing import Any


def _sizes(f: dict[str, Any] | None) -> str:
    if not f or not f.get("sizes"):
        return "-"
    return f".text {f['sizes']['text']} B, allocated {f['sizes']['alloc']} B, {f.get('count_after')} instructions"


def render_transcript(rec: dict[str, Any]) -> str:
    lines = [
        f"object   {rec['object']}",
        f"source   {rec['source']}",
        f"IR       {rec['count_before']} instructions (hash {rec['ir_hash'][:16]})" if rec.get("ir_hash")
        else "IR       not built (--llm-off: clang compiled the TU at -Oz in one run)",
        f"model    {rec.get('model_id')}  calls: {rec.get('model_calls', 0)}  cache hit: {rec.get('cache_hit')}",
        f"-Oz      {_sizes(rec['oz'])}",
    ]
    for i, rnd in enumerate(rec.get("rounds") or [], 1):
        lines.append(f"--- round {i} ---")
        if "prompt_tokens" in rnd:
            lines.append(f"prompt: {rnd['prompt_tokens']} tokens")
        for j, c in enumerate(rnd.get("candidates", []), 1):
            f = c.get("finding") or {}
            lines.append(f"  candidate {j}: {c.get('pass_list') or '(unparsed)'}")
            for p in c.get("problems", []):
                lines.append(f"    problem: {p}")
            if f:
                err = (f.get("error") or "")[:200]
                status = "valid" if f.get("valid") else f"INVALID ({f.get('error_kind')}: {err})"
                lines.append(f"    {status}; {_sizes(f)}")
                lines.append(f"    predicted count {f.get('predicted_before')} -> {f.get('predicted_after')}, "
                             f"real {f.get('count_before')} -> {f.get('count_after')}")
        if rnd.get("feedback"):
            lines.append("  feedback to the model:")
            lines += [f"    {ln}" for ln in str(rnd["feedback"]).splitlines()]
        for k in ("cache", "pass_list", "error"):
            if k in rnd and k != "candidates":
                lines.append(f"  {k}: {rnd[k]}")
    lines.append(f"chosen   {rec['chosen']['pass_list']}: {_sizes(rec['chosen'])}")
    lines.append(f"reason   {rec['reason']}")
    if rec.get("seconds") is not None:
        lines.append(f"time     {rec['seconds']} s")
    return "\n".join(lines)
