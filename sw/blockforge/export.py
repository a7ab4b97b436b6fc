"""Quantize a Hugging Face model (pruned or not) for a spec and write its ``.bfim`` image.

One function for the ``export`` command and the end-to-end flow::

    result = export_model("out/pruned", load_spec("tile8"), task, calib=256, output="out/model.bfim")
    result.quantized.layers      # the BlockSparseLayers written
    result.metadata              # what the image's info section records

Calibration runs the float model on the first ``calib`` training examples of the task, batched by
length. torch is imported here (this module is not part of the light image/estimate path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import UsageError
from .quant import DEFAULT_CALIBRATOR, DEFAULT_PERCENTILE
from .spec import Spec

__all__ = ["DEFAULT_CALIB", "ExportResult", "calibration_batches", "export_model"]

DEFAULT_CALIB = 256


@dataclass
class ExportResult:
    quantized: Any            # blockforge.qmodel.QuantizedModel
    metadata: dict
    path: Path | None


def calibration_batches(tokenizer, examples: Sequence, *, max_length: int, batch_size: int,
                        regression: bool = False) -> Iterator[dict]:
    """Padded batches of ``examples``, shortest first (little padding)."""
    from .batches import tokenize

    split = tokenize(tokenizer, examples, max_length)
    order = sorted(range(len(split)), key=lambda i: len(split.features[i]["input_ids"]))
    for i in range(0, len(order), batch_size):
        yield split.collate(order[i:i + batch_size], regression)


def export_model(model: Any, spec: Spec, task: Any, *, tokenizer: Any = None, calib: int = DEFAULT_CALIB,
                 calibrator: str = DEFAULT_CALIBRATOR, percentile: float = DEFAULT_PERCENTILE,
                 max_length: int = 64, batch_size: int = 32, output: str | Path | None = None,
                 model_source: str | None = None) -> ExportResult:
    """Calibrate and quantize ``model`` (a folder, ``default``, or a loaded model with ``tokenizer``) for
    ``spec`` on ``task`` (a :class:`~blockforge.data.Task` or task string); write the image to ``output``
    if given (atomically). Raises UsageError / SpecError / DataError on bad input."""
    import torch

    from .data import load_task
    from .image import write_image
    from .models import load_model, load_tokenizer, resolve_model
    from .qmodel import quantize_model

    for value, flag in ((calib, "calib"), (max_length, "max-length"), (batch_size, "batch-size")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UsageError(f"--{flag} must be a positive integer, got {value!r}")
    if isinstance(task, str):
        task = load_task(task)
    if isinstance(model, (str, Path)):
        model_source = model_source or str(model)
        tokenizer = tokenizer or load_tokenizer(model)
        model = load_model(model, labels=task.labels).model
    elif tokenizer is None:
        raise UsageError("export_model: pass the tokenizer with a loaded model")
    examples = task.train[:calib]
    batches = calibration_batches(tokenizer, examples, max_length=max_length, batch_size=batch_size,
                                  regression=task.is_regression)
    with torch.no_grad():
        quantized = quantize_model(model, spec, batches, calibrator=calibrator, percentile=percentile)
    metadata = {
        "model": model_source,
        "model_path": resolve_model(model_source) if model_source else None,
        "model_type": getattr(model.config, "model_type", None),
        "task": task.name,
        "calibration_examples": len(examples),
        "max_length": max_length,
        "calibrator": calibrator,
        "percentile": quantized.calibration.get("percentile"),
        "roles": quantized.roles,
        "calibration": {name: {k: v for k, v in d.items() if k != "role"}
                        for name, d in quantized.calibration["layers"].items()},
    }
    path = write_image(output, quantized.layers, spec, metadata) if output is not None else None
    return ExportResult(quantized, metadata, path)
