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


@dataclass
class ModelRecipe:
    """How a model is made: data, prompts, architecture and training. The defaults are the shipped
    model's recipe (docs/model-card.md), so `clang-llm-tool train` given only its inputs retrains
    it; the CLI and the trainer take their defaults from here and nowhere else."""

    context: int = 1024  # training sequence length = the model's context
    prompt_budget: int = 512  # round-1 IR tokens: CPU training cost grows with it
    max_new_tokens: int = 96  # the answer's room (the wrapper's `max_new_tokens`)
    vocab_size: int = 4096
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 2
    steps: int = 1800
    schedule_steps: int | None = None  # learning-rate schedule length (default: steps)
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    cpu_threads: int | None = 1  # torch CPU threads: 1 is fastest on a busy box, and what the shipped model used
    prompt_format: str = "cllm-v2"  # cllm-v2: TU summary in the prompt, a ranked pool of stored lists
    pool_size: int = 64  # cllm-v2: stored lists (Oz and the train labels' coreset)
    rank_weight: float = 4.0  # cllm-v2: weight of the first answer token's ranking loss
    risk_lambda: float = 0.01  # cllm-v2: scale of the measured losses of minimum-risk examples (trainer.risk_term)
    pool_from: str = ""  # cllm-v2: a fixed pool (JSON {"pool": [...]}, an examples file or a model); "" = coreset
    sweep: str = ""  # cllm-v2: a pool sweep of the train modules (clang-llm-tool pool-sweep): ranking targets
