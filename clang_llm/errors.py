"""Every exception clang-llm raises on purpose, in one tree, so a caller catches what it means.

    ClangLLMError
    ├── ToolError                 an LLVM tool could not do its job
    │   ├── ToolMissing           not installed (the message says how to install it)
    │   └── ToolTimeout           ran past its time limit (also a TimeoutError)
    ├── Fallback                  give up on this TU: plain clang builds it; `reason` is counted
    ├── ModelError                a model that cannot be used or cannot answer; `reason` is counted
    │   └── BackendError          a model server's failure (`backend-<kind>`)
    ├── InputError                input that does not parse (also a ValueError)
    │   ├── PassListError         a pass list that cannot be run
    │   ├── PromptTooLong         a TU whose prompt cannot fit the model's context
    │   ├── MethodError           an evaluation method name that does not parse
    │   └── BadRequest            a request `serve` refuses (HTTP 400)
    └── SlotTimeout               no CPU slot came free in time (also a TimeoutError)

`reason` strings are what `clang-llm-tool stats` counts; each class that carries one documents
its values where it is raised.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (a log line or a CLI message, not a dump)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ClangLLMError(Exception):
    """The root: anything clang-llm raises deliberately."""


class ToolError(ClangLLMError):
    """An LLVM tool could not do its job."""


class ToolMissing(ToolError):
    """A required LLVM tool is not installed; the message says how to install it."""


class ToolTimeout(ToolError, TimeoutError):
    """A tool ran past its time limit (the process was killed)."""


class Fallback(ClangLLMError):
    """Give up on this TU: plain clang -Oz builds it. `reason` is counted in the stats."""

    def __init__(self, reason: str, detail: str = "", done: tuple[int, bytes, bytes] | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        # Plain clang -Oz already ran and failed (status, stdout, stderr): the caller shows that.
        self.done = done


class ModelError(ClangLLMError):
    """A model directory that cannot be used, or a model that cannot answer; the message is one
    line, fit for a log or a CLI. `reason` is the counted fallback reason."""

    reason = "model-error"


class BackendError(ModelError):
    """The server could not give a usable answer; `reason` is the counted fallback reason."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"backend {kind}: {detail}" if detail else f"backend {kind}")
        self.reason = f"backend-{kind}"


class InputError(ClangLLMError, ValueError):
    """Input that does not parse or cannot be used as given."""


class PassListError(InputError):
    """A pass list that cannot be run: unknown token, empty, misplaced base pipeline."""


class PromptTooLong(InputError):
    """The TU's prompt cannot fit the model's context in this format (one that never cuts IR)."""


class MethodError(InputError):
    """An evaluation method name that does not parse."""


class BadRequest(InputError):
    """A request the server refuses (HTTP 400), with the message sent back."""


class SlotTimeout(ClangLLMError, TimeoutError):
    """No slot came free within the wait allowed."""
