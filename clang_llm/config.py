"""Settings: defaults < user file < project file (+ its per-file sections) < CLANG_LLM_* env < --llm-* flags.

Every value remembers where it came from, for `clang-llm-tool config`. Bad values from any
source never break a build: they are ignored (and logged), the lower layer's value stays; a file
that cannot be read at all (bad TOML, bad bytes) is one problem, and the other layers still apply
(the kill switch in the environment wins over every file).

A project file is the project's, not the user's: a cloned repository is someone else's input. It
may change how hard we try and what we try (rounds, rank, timeouts, a model directory inside the
project), never where data, source or secrets go (`USER_ONLY`). It is looked for from the working
directory up to the repository root (the first directory holding `.git`), never above `$HOME`,
and only a file owned by the user (or root) that others cannot write counts.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from clang_llm.prompt_format import FEEDBACK_FORMS, PROMPT_FORMATS
from clang_llm.safe_text import public_url, server_root

PROJECT_FILE = ".clang-llm.toml"
PROJECT_SOURCE = "project file"  # how a project file's values name their source (sources, problems)
# Settings that decide where data, source or credentials go, or what we write where: only the
# user's own file, the environment or the command line may set them. Why each: `backend` and
# `backend_key_env` would send IR and an environment variable's value to a server; `dir` and
# `record` choose where we write (records keep argv and IR); `daemon` chooses whom the client
# talks to; `cache_url` would share decisions with a store.
USER_ONLY = frozenset({"backend", "backend_key_env", "dir", "record", "daemon", "cache_url"})


def user_config_path() -> Path:
    """The user's own config file (trusted: it may set every setting)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "clang-llm" / "config.toml"


def _default_state_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "clang-llm")


@dataclass(frozen=True)
class EffortLevel:
    """What one `effort` level tries per TU. Its values are the defaults of the settings of the
    same names (`EFFORT_SETTINGS`); a value set anywhere (file, environment, flag) overrides."""

    rank: int  # stored lists the model ranks and tries, in minimum-risk order
    stop: float  # stop trying when the rest is expected to lower log(.text) by less (risk.further_gain)
    samples: int = 0
    rounds: int = 1
    what: str = ""


# The levels and the default, chosen on the validation split (benchmarks/README.md, "Effort"):
# each level's stop is the largest of 0.001-0.01 that keeps 99.5 % of its rank's gain at stop 0
# there; level 4 reproduces clang-llm-v5's defaults exactly, so it never stops early.
EFFORT_LEVELS: dict[int, EffortLevel] = {
    1: EffortLevel(rank=2, stop=0.002, what="two ranked lists"),
    2: EffortLevel(rank=4, stop=0.002, what="four ranked lists"),
    3: EffortLevel(rank=8, stop=0.005, what="eight ranked lists"),
    4: EffortLevel(rank=15, stop=0.0, what="the 15 ranked lists of the earlier defaults, no early stop"),
    5: EffortLevel(rank=63, stop=0.01, what="every stored list of the pool"),
}
DEFAULT_EFFORT = 2
EFFORT_SETTINGS = ("rank", "stop", "samples", "rounds")
_LEVEL = EFFORT_LEVELS[DEFAULT_EFFORT]


@dataclass
class Settings:
    # How hard a TU is tried (1..5, `EFFORT_LEVELS`): the default of rank, stop, samples, rounds.
    effort: int = DEFAULT_EFFORT
    rounds: int = _LEVEL.rounds  # feedback rounds (1 = no feedback)
    samples: int = _LEVEL.samples  # lists the model writes per round (one batched generate call); a
    # model without a pool to rank always writes at least one
    # Stored lists (a cllm-v2 model's pool) ranked by the model and tried per round, besides the
    # samples; a model without a pool ignores it.
    rank: int = _LEVEL.rank
    # Early stop: the ranked lists left are skipped when the model expects them to lower
    # log(.text / -Oz .text) by less than this (0: try them all); a model without a loss table
    # tries them all.
    stop: float = _LEVEL.stop
    feedback: str = "short"  # fast | short | long
    model: str = ""  # model directory; "" = the packaged default model
    off: bool = False  # no model for this TU: -Oz through the wrapper (counted)
    seed: int = 0
    temperature: float = 1.0  # of the samples after the greedy answer (samples > 1); chosen on the validation split
    max_new_tokens: int = 96
    opt_timeout: float = 30.0  # seconds per opt / codegen run
    # The TU's time budget: candidates stop after `time_budget` times clang's own time for the TU
    # (front end + its -Oz opt and codegen), at least `time_budget_min` seconds; the verified
    # rerun of the winner must end by 1.5 times that, else -Oz ships. The floor keeps every
    # ordinary TU's choices as without a budget (a default build's largest lz4 TU takes ~25 s).
    time_budget: float = 10.0
    time_budget_min: float = 60.0
    optimize_o0: bool = True  # False: -O0 TUs pass straight through untouched
    # TUs with fewer IR instructions skip the model and ship -Oz (configure probes, stubs): on the
    # validation split no module under 80 instructions had a list beating -Oz.
    min_instructions: int = 30
    jobs: int = 2  # candidates validated in parallel
    heavy_jobs: int = 0  # opt + codegen runs at once per machine without make's jobserver (0: cores)
    # Sources up to this size also start plain `clang -Oz -c` beside the IR step when a machine
    # slot is idle: for a TU too small for the model (configure's probes) that run is the answer.
    speculate_bytes: int = 8192
    dir: str = field(default_factory=_default_state_dir)  # stats, records, cache, log
    record: str = ""  # CLANG_LLM_RECORD: save each TU's IR + command line here
    cache: bool = True
    db_timeout: float = 5.0  # seconds to wait for a busy database before skipping the write
    cache_max_entries: int = 50_000
    disable: bool = False  # kill switch: exec the real compiler, untouched
    daemon: bool = True  # through the warm daemon (read by the thin client: env or flag only)
    # A model server instead of the packaged model: http(s)://host:port or unix:/path/to/socket,
    # speaking the OpenAI completions API (vLLM, llama.cpp's server, `clang-llm-tool serve`).
    backend: str = ""
    backend_model: str = ""  # the server's model to use; "" = its first
    prompt_format: str = ""  # "" = what the model says (its card); e.g. llm-compiler-ftd for FTD on vLLM
    backend_timeout: float = 60.0  # seconds to wait for one answer
    backend_concurrency: int = 8  # requests in flight per machine, all builds together
    backend_key_env: str = "CLANG_LLM_API_KEY"  # the environment variable that holds the API key

    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state_dir(self) -> Path:
        return Path(self.dir)

    def decision_key(self) -> dict[str, Any]:
        """The settings that decide the object (`OBJECT_SETTINGS`): part of the decision cache's
        key and of `--llm-identity` (a URL without its credentials)."""
        return {k: server_root(v) if k == "backend" and v else v
                for k, v in ((k, getattr(self, k)) for k in OBJECT_SETTINGS)}

    def public(self) -> dict[str, Any]:
        """The values as records show them: no user-info (a password) in the backend URL."""
        values = {k: v for k, v in vars(self).items() if k != "sources"}
        values["backend"] = public_url(self.backend) if self.backend else ""
        return values


# Every setting either decides the object a TU ships -- then it is in the decision cache's key and
# in `--llm-identity`, so a compiler cache in front of us misses when it changes -- or is listed
# with the reason it cannot (tests/test_defaults_once.py walks `Settings`).
OBJECT_SETTINGS = ("disable", "off", "optimize_o0", "min_instructions", "model", "backend", "backend_model",
                   "prompt_format", "rounds", "samples", "rank", "stop", "feedback", "seed", "temperature",
                   "max_new_tokens")
NOT_OBJECT_SETTINGS = {
    "effort": "it decides through rank, stop, samples and rounds, which are in the key",
    "opt_timeout": "a run past it is refused, not replaced: a machine's load, not a choice (-Oz ships)",
    "time_budget": "as opt_timeout: what is cut ships -Oz or the best verified object so far",
    "time_budget_min": "as time_budget",
    "backend_timeout": "as opt_timeout, for a model server's answer",
    "jobs": "how many candidates run at once, not which",
    "heavy_jobs": "as jobs, per machine",
    "backend_concurrency": "requests in flight, not their answers",
    "speculate_bytes": "the speculative run is clang's own -Oz: the object the baseline rebuilds byte for byte",
    "dir": "where our state lives",
    "record": "a copy of the IR, beside the build",
    "cache": "whether a stored decision is reused: it is the same decision",
    "db_timeout": "how long a database write may wait",
    "cache_max_entries": "how many decisions are kept",
    "daemon": "which process compiles, not what",
    "backend_key_env": "who may ask the server, not what it answers",
}
SETTING_NAMES = [f.name for f in fields(Settings) if f.name != "sources"]
# The real types (not the annotation strings that `from __future__ import annotations` leaves).
_TYPES: dict[str, type] = {n: t for n, t in get_type_hints(Settings).items() if n in SETTING_NAMES}
SettingValue = bool | int | float | str


def _coerce(name: str, value: object) -> SettingValue:
    typ = _TYPES[name]
    if typ is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on", ""):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if typ is int:
        v = int(value)  # type: ignore[call-overload]  # TOML int, env string or flag string
        if name in ("rounds", "jobs", "backend_concurrency") and not 1 <= v <= 64:
            raise ValueError(f"{name} must be 1..64")
        if name == "effort" and v not in EFFORT_LEVELS:
            raise ValueError(f"effort must be {min(EFFORT_LEVELS)}..{max(EFFORT_LEVELS)}")
        if name in ("samples", "rank") and not 0 <= v <= 64:  # samples 0: only ranked stored lists
            raise ValueError(f"{name} must be 0..64")
        return v
    if typ is float:
        v = float(value)  # type: ignore[arg-type]
        if v < 0:
            raise ValueError(f"{name} must be >= 0")
        return v
    s = str(value)
    if name == "feedback" and s not in FEEDBACK_FORMS:
        raise ValueError(f"feedback must be one of {', '.join(FEEDBACK_FORMS)}")
    if name == "prompt_format" and s and s not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}")
    if name == "backend" and s and not s.startswith(("http://", "https://", "unix:/")):
        raise ValueError("backend must be an http://, https:// or unix:/ URL")
    return s


def _apply(settings: Settings, values: dict[str, Any], source: str, problems: list[str],
           project_root: Path | None = None) -> None:
    """Set `values` from `source`; `project_root` (a project file's directory) marks values a
    project may not set (`USER_ONLY`, a model outside the project): those are reported, not set."""
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in SETTING_NAMES or isinstance(value, dict):
            if not isinstance(value, dict):
                problems.append(f"{source}: unknown setting {raw_key!r}")
            continue
        if project_root is not None:
            why = _refused_in_project(key, value, project_root)
            if why:
                problems.append(f"{source}: {raw_key} ignored: {why}")
                continue
            if key == "model" and str(value):  # relative to the project, wherever the build runs
                value = str(Path(project_root, str(value)).resolve())
        try:
            setattr(settings, key, _coerce(key, value))
            settings.sources[key] = source
        except (TypeError, ValueError) as e:
            problems.append(f"{source}: {raw_key}: {e}")


def _refused_in_project(key: str, value: object, root: Path) -> str:
    """Why a project file may not set `key` to `value` ("" when it may)."""
    if key in USER_ONLY:
        return ("a project file may not choose where data, source or credentials go; set it in your own "
                "config file, the environment (CLANG_LLM_" + key.upper() + ") or with --llm-" + key.replace("_", "-"))
    if key == "model" and str(value):
        try:
            Path(root, str(value)).resolve().relative_to(root.resolve())
        except (ValueError, OSError, RuntimeError):
            return "a project file may only name a model directory inside the project"
    return ""


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError, OSError):
        return None


def _trusted_file(path: Path) -> bool:
    """A file the user (or root) owns that nobody else may write: a file planted by another user
    in a shared directory (/tmp) is not the user's project."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid in (os.getuid(), 0) and not st.st_mode & 0o022


def find_project_file(start: Path) -> Path | None:
    """The project file that governs `start`: the nearest `.clang-llm.toml` from `start` up to the
    repository root (the first directory holding `.git`), never above `$HOME`."""
    home = _home()
    try:
        start = start.resolve()
    except (OSError, RuntimeError):
        return None
    for d in [start, *start.parents]:
        if home is not None and d != home and home.is_relative_to(d):
            break  # above $HOME: not the user's project any more
        p = d / PROJECT_FILE
        if p.is_file():
            return p if _trusted_file(p) else None
        if (d / ".git").exists() or d == home:
            break
    return None


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    """The file's table, or {} with the reason in `problems` (unreadable, bad bytes, bad TOML)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as e:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        problems.append(f"{path}: ignored, cannot be read: {e}")
        return {}


def _file_sections(data: dict[str, Any], base: Path, source: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """Per-file sections `[files."PATTERN"]` that match `source` (abs path, or relative to the file)."""
    out = []
    files = data.get("files")
    if source is None or not isinstance(files, dict):
        return out
    src = str(source)
    for pattern, values in files.items():
        if not isinstance(values, dict):
            continue
        pat_abs = pattern if os.path.isabs(pattern) else str(base / pattern)
        if fnmatch.fnmatchcase(src, pat_abs) or fnmatch.fnmatchcase(src, pattern):
            out.append((pattern, values))
    return out


def load_settings(
    flags: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    source_file: Path | None = None,
    problems: list[str] | None = None,
    files: bool = True,
) -> Settings:
    """Build the effective settings for one invocation (and, if given, one source file);
    `files=False` reads only the environment and the flags."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    problems = problems if problems is not None else []
    s = Settings()
    for name in SETTING_NAMES:
        s.sources[name] = "default"
    if files:
        try:
            _apply_files(s, cwd, source_file, problems)
        except Exception as e:  # noqa: BLE001  (a file of any shape must not cost the env or flags)
            problems.append(f"config files ignored: {type(e).__name__}: {e}")
    env_values = {
        k[len("CLANG_LLM_"):].lower(): v
        for k, v in env.items()
        if k.startswith("CLANG_LLM_") and k[len("CLANG_LLM_"):].lower() in SETTING_NAMES
    }
    _apply(s, env_values, "environment", problems)
    if flags:
        _apply(s, flags, "command line", problems)
    at_effort(s)
    return s


def at_effort(s: Settings) -> Settings:
    """Give every effort setting (`EFFORT_SETTINGS`) that no layer set its level's value (its
    source then reads `effort N` when a layer chose the level, else `default`)."""
    level = EFFORT_LEVELS[s.effort]
    chosen = s.sources.get("effort", "default") != "default"
    for name in EFFORT_SETTINGS:
        if s.sources.get(name, "default") == "default":
            setattr(s, name, getattr(level, name))
            s.sources[name] = f"effort {s.effort}" if chosen else "default"
    return s


def _apply_files(s: Settings, cwd: Path, source_file: Path | None, problems: list[str]) -> None:
    user = user_config_path()
    if user.is_file():
        _apply(s, _read_toml(user, problems), f"user file {user}", problems)
    proj = find_project_file(cwd)
    if proj:
        data = _read_toml(proj, problems)
        root = proj.parent
        _apply(s, data, f"{PROJECT_SOURCE} {proj}", problems, project_root=root)
        src = None if source_file is None else Path(os.path.normpath(cwd / source_file))
        for pattern, values in _file_sections(data, root, src):
            _apply(s, values, f"{PROJECT_SOURCE} {proj} [files.{pattern!r}]", problems, project_root=root)
