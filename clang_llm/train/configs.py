"""Settings of the labelling and screening runs, apart from the code that runs them, so the CLI
takes its defaults from here without importing the search."""

from __future__ import annotations

from dataclasses import dataclass

# Lists that won on real projects' TUs in a long .text-directed search and on a pilot run over corpus modules
# (budget 24, 16 modules); tried first everywhere, interleaved with the shared winners.
DEFAULT_BROADCAST: tuple[str, ...] = (
    "Oz loop-reduce simplifycfg<hoist-common-insts;sink-common-insts>",
    "O1",
    "Oz sink",
    "Oz loop-reduce early-cse",
    "Oz iroutliner separate-const-offset-from-gep",
    "Oz mergefunc",
    "Oz gvn-sink",
    "Oz loop-reduce gvn-sink simplifycfg<hoist-common-insts;sink-common-insts>",
    "Oz gvn-hoist",
    "Oz simplifycfg<hoist-common-insts;sink-common-insts>",
    "Os",
    "O1 gvn-hoist",
)


@dataclass
class AutotuneConfig:
    """Search settings; `budget` counts opt evaluations per module (the -Oz baseline excluded)."""

    budget: int = 8
    timeout: float = 20.0  # seconds per opt / codegen run
    module_timeout: float = 240.0  # stop searching a module after this many wall seconds
    max_instructions: int = 40_000  # bigger modules are recorded as skipped ("too-large")
    large_instructions: int = 4_000  # above this, the budget shrinks in proportion (min. min_budget)
    min_budget: int = 3
    seed: int = 0
    top_k: int = 8
    verify_each: bool = True
    # Search with IncrementalEvaluator (suffixes on cached prefix outputs, no -verify-each, one
    # codegen per distinct module); the kept lists are then re-run whole with -verify-each.
    fast: bool = False
    share_winners: bool = True  # broadcast the lists that won on modules labelled before
    broadcast_share: float = 0.5
    default_broadcast: tuple[str, ...] = DEFAULT_BROADCAST  # the fixed lists of the broadcast phase
    greedy_share: float = 0.35


FIRST_SEED = 900_001  # far from the corpus' csmith seeds (1 ..), so screening programs are unseen


@dataclass
class ScreenConfig:
    """How much to screen: programs, pipelines, timeouts and parallelism."""

    programs: int = 24
    first_seed: int = FIRST_SEED
    pipelines: int = 20
    opt_timeout: float = 30.0
    run_timeout: float = 5.0  # for the -O0 reference; optimized builds get 3x (+1 s)
    jobs: int = 2
    verify_each: bool = True
