"""The main job end to end: fine-tune → BSP prune → int8 export → RTL simulation with bit-exact checks →
cycle estimate (equal to the RTL) → report, with a summary a user reads.

    blockforge run --spec tile8 --model default --task default -o out/run [--config run.yaml]
    blockforge demo                          # the same with the short demo schedule into out/demo

Every stage writes its outputs atomically under OUTDIR and records a fingerprint of its inputs (settings
and the content of the files it reads) and the size and SHA-256 of its outputs in
``OUTDIR/.stages/<stage>.json``; a rerun skips each stage whose fingerprint and outputs are unchanged,
so an interrupted run resumes where it stopped and a changed setting or file reruns what depends on it.

This package sits at the top of the import stack (it drives software, hardware and simulation).

The package: :mod:`.config` (RunConfig, presets), :mod:`.store` (the resume store of stage stamps),
:mod:`.stages` (the seven stage bodies and :func:`run_flow`), :mod:`.summary` (the summary and its text).
"""

from .config import PRESETS, STAGES, RunConfig
from .stages import FlowResult, run_flow
from .store import Stages
from .summary import format_summary, summarize

__all__ = ["PRESETS", "STAGES", "FlowResult", "RunConfig", "Stages", "format_summary", "run_flow", "summarize"]
