"""`select_best`: the rule that decides what ships (smallest .text, never larger than -Oz in .text
or in allocated bytes, ties broken deterministically)."""

from __future__ import annotations

from clang_llm.objsize import Sizes
from clang_llm.optimizer.base import select_best
from clang_llm.records import Finding


def _f(name: str, text: int, alloc: int, count: int = 10, valid: bool = True) -> Finding:
    return Finding(pass_list=name, valid=valid, sizes=Sizes(text, alloc) if valid else None, count_after=count)


OZ = _f("Oz", 100, 200)


def test_smaller_text_but_more_allocated_bytes_never_wins() -> None:
    chosen, reason = select_best(OZ, [_f("a", 90, 201)])
    assert chosen is OZ and reason == "no-candidate-beat-oz"


def test_smaller_alloc_but_larger_text_never_wins() -> None:
    chosen, _ = select_best(OZ, [_f("a", 101, 150)])
    assert chosen is OZ


def test_smallest_text_wins_then_alloc_then_count_then_order() -> None:
    a, b, c, d = _f("a", 95, 200), _f("b", 90, 199), _f("c", 90, 198, count=12), _f("d", 90, 198, count=11)
    chosen, reason = select_best(OZ, [a, b, c, d])
    assert chosen is d and reason == "beats-oz"
    e, f = _f("e", 90, 198, count=11), _f("f", 90, 198, count=11)
    assert select_best(OZ, [e, f])[0] is e  # a full tie keeps the earlier candidate
    assert select_best(OZ, [f, e])[0] is f


def test_equal_to_oz_keeps_oz() -> None:
    chosen, reason = select_best(OZ, [_f("same", 100, 200, count=10)])
    assert chosen is OZ and reason == "no-candidate-beat-oz"


def test_equal_text_smaller_alloc_wins() -> None:
    x = _f("x", 100, 190)
    assert select_best(OZ, [x]) == (x, "beats-oz")


def test_invalid_or_unmeasured_candidates_are_skipped() -> None:
    broken = _f("broken", 1, 1, valid=False)
    unmeasured = Finding(pass_list="u", valid=True, sizes=None)
    assert select_best(OZ, [broken, unmeasured])[0] is OZ
