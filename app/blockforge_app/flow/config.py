"""What a run depends on: :class:`RunConfig` (from ``--config`` YAML and flags, every value type- and
range-checked) and the data presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from blockforge.data import check_seed
from blockforge.errors import UsageError
from blockforge.spec import DEFAULT_SPEC
from blockforge.yamlsafe import load_yaml, shown

# Data sizes per preset; the training schedule comes from blockforge.prune (its one owner).
PRESETS = {
    # The demo: a short schedule that fits ~20 minutes on 2 CPU cores (docs/quickstart.md):
    # prune.DEMO_SCHEDULE (one epoch per phase) on 2,000 training / 500 dev tweets.
    "demo": {"train_size": 2000, "dev_size": 500},
    # The full schedule (prune.Schedule.recommended for the sparsity) on the task's own sizes
    # (tweets: 4,000 / 2,000).
    "full": {"train_size": None, "dev_size": None},
}
# Dev examples scored through the RTL when the run does not say (docs/simulation.md: Verilator scores
# ≈ 0.34 tweets/s on 2 cores, the whole dev split in 24 min; Icarus is ≈ 100× slower).
RTL_EVAL_EXAMPLES = {"verilator": 64, "icarus": 8}
STAGES = ("prune", "export", "int8_eval", "rtl_layers", "rtl_eval", "estimate", "report")


_CHECKED_FIELDS = (   # (field, accepted types, lower bound): the YAML and the flags are checked alike
    ("model", (str,), None), ("task", (str,), None), ("spec", (str,), None), ("method", (str,), None),
    ("preset", (str,), None), ("simulator", (str,), None), ("sparsity", (int, float), 0),
    ("seed", (int,), 0), ("train_size", (int,), 1), ("dev_size", (int,), 1), ("dense_epochs", (int, float), 0),
    ("bsp_epochs", (int, float), 0), ("retrain_epochs", (int, float), 0), ("distill", (bool,), None),
    ("max_length", (int,), 8), ("calib", (int,), 1), ("tokens", (int,), 1), ("rtl_eval_examples", (int,), 0),
    ("threads", (int,), 1), ("sim_workers", (int,), 1), ("progress", (bool,), None))
_OPTIONAL_FIELDS = {"train_size", "dev_size", "dense_epochs", "bsp_epochs", "retrain_epochs", "distill", "tokens",
                    "threads", "sim_workers", "rtl_eval_examples"}


@dataclass(frozen=True)
class RunConfig:
    """Everything the flow depends on; from a YAML file (``--config``) and/or command-line flags."""

    model: str = "default"
    task: str = "default"
    spec: str = DEFAULT_SPEC
    sparsity: float = 0.5
    method: str = "bsp"
    preset: str = "demo"
    seed: int = 0
    train_size: int | None = None      # None: the preset's
    dev_size: int | None = None
    dense_epochs: float | None = None
    bsp_epochs: float | None = None
    retrain_epochs: float | None = None
    distill: bool | None = None        # None: on for the full preset (the measured recipe), off for demo
    max_length: int = 64
    calib: int = 256
    tokens: int | None = None          # N per RTL pass; None: max_tokens on Verilator, 16 on Icarus
    simulator: str = "auto"            # auto | icarus | verilator
    rtl_eval_examples: int | None = None   # dev examples scored through the RTL (0: skip); None: 64 on
                                           # Verilator, 8 on Icarus
    threads: int | None = None
    sim_workers: int | None = None     # simulator processes in parallel; None: one per core
    progress: bool = True              # progress bars and build timers on stderr

    def __post_init__(self) -> None:
        for key, kinds, lo in _CHECKED_FIELDS:
            value = getattr(self, key)
            if value is None and key in _OPTIONAL_FIELDS:
                continue
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds) \
                    or (lo is not None and not value >= lo):
                need = " or ".join(k.__name__ for k in kinds) + (f" >= {lo}" if lo is not None else "")
                raise UsageError(f"{key}: expected {need}, got {shown(value)}")
        # function-level: blockforge.prune.schedule loads torch, which the run needs next anyway
        from blockforge.prune.schedule import check_sparsity

        check_sparsity(self.sparsity)               # before the output folder exists, not after
        check_seed(self.seed)
        if self.preset not in PRESETS:
            raise UsageError(f"preset: unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        if self.simulator not in ("auto", "icarus", "verilator"):
            raise UsageError(f"simulator: expected auto, icarus or verilator, got {self.simulator!r}")

    def resolved_rtl_eval_examples(self, simulator: str) -> int:
        """Dev examples scored through the RTL: as set, else RTL_EVAL_EXAMPLES of the simulator used."""
        return self.rtl_eval_examples if self.rtl_eval_examples is not None else RTL_EVAL_EXAMPLES[simulator]

    @property
    def resolved_distill(self) -> bool:
        return self.distill if self.distill is not None else self.preset == "full"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "RunConfig":
        data = load_yaml(path, error=UsageError, what="run config")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of run settings")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise UsageError(f"{path}: {key if isinstance(key, str) and len(key) <= 40 else shown(key, 40)}: unknown key (known keys: {', '.join(sorted(known))})")
        try:
            return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None

    def schedule_values(self) -> dict:
        """Data sizes and the pruning schedule (as plain data) this run uses."""
        from blockforge.prune.pipeline import DEMO_SCHEDULE
        from blockforge.prune.schedule import Schedule

        values = dict(PRESETS[self.preset])
        for key in ("train_size", "dev_size"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        schedule = DEMO_SCHEDULE if self.preset == "demo" else Schedule.recommended(self.sparsity)
        epochs = {k: getattr(self, k) for k in ("dense_epochs", "bsp_epochs", "retrain_epochs")
                  if getattr(self, k) is not None}
        values.update(dataclasses.asdict(dataclasses.replace(schedule, **epochs)))
        return values


# --------------------------------------------------------------------------------------------------
