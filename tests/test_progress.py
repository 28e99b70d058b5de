"""Progress off a terminal: throttled plain lines on stderr, so background logs show progress."""

from __future__ import annotations

import pytest

from clang_llm import progress


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 3600.0)
    bar, live = progress.make_progress("eval")
    assert not live  # pytest's stderr is not a terminal
    with bar:
        t = bar.add_task("x", total=5, info="")
        for i in range(5):
            bar.update(t, advance=1, info=f"m{i}")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["eval: 5/5, ETA 0 min m4"]  # throttled: only the final line within the hour


def test_disabled_progress_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    bar, _ = progress.make_progress("eval", enabled=False)
    with bar:
        t = bar.add_task("x", total=2, info="")
        bar.advance(t)
    assert capsys.readouterr().err == ""
