"""Tasks from users' own files: CSV, TSV, JSON, JSON Lines, or a Hugging Face dataset saved to disk.

A file task is named ``FORMAT:PATH[?key=value&...]`` (docs/data.md):

``FORMAT``
    ``csv`` / ``tsv`` (a header row names the columns; UTF-8, a BOM is fine), ``json`` (one array of
    objects), ``jsonl`` (one object per line), ``hf`` (a folder written by ``datasets``' ``save_to_disk``;
    needs the optional ``datasets`` package).
``PATH``
    A file: its examples are shuffled with the task seed and split into dev (``dev_size`` examples, or
    10% when no size is given) and train (the rest). A folder: ``train.<ext>`` and ``dev.<ext>`` (or
    ``validation.<ext>``) inside it; for ``hf``, the ``train`` split and the first of ``validation``,
    ``dev``, ``test`` (a dataset without splits is split like a file).
``key=value``
    ``text`` (default ``text``), ``text_pair`` (default: ``text_pair`` when that column exists, else
    single sentences), ``label`` (default ``label``) name the columns; ``type`` = ``classification`` or
    ``regression`` overrides the guess from the label values.

Label values decide the task type unless ``type`` is given: integers or strings are classes (any number),
numbers that are not all integers are a regression target (``num_labels`` 1). Classes are numbered in
sorted order (numeric for integers) and their names kept (they become the model's ``id2label``); a
``datasets`` ``ClassLabel`` column keeps its own names and ids. A label seen only in dev is still a class.
Metrics: accuracy and F1 of class 1 for two classes, accuracy and macro F1 for more, Pearson and
Spearman for regression.

Every problem — a missing or empty file, a missing column, a row with the wrong number of fields, text
that is not UTF-8, a missing or non-text value, mixed label types, a non-finite target — is one
:class:`~blockforge.data.DataError` naming the file and the line (CSV, JSON Lines), item (JSON) or row
(``hf``) and the column.

This module imports neither torch nor transformers (``datasets`` only for ``hf``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl

from .data import DataError, Example, Task
from .yamlsafe import shown as _shown_any

__all__ = ["FILE_FORMATS", "FileTaskOptions", "load_file_task", "parse_file_task"]

FILE_FORMATS = ("csv", "tsv", "json", "jsonl", "hf")
DEV_FRACTION = 0.1                       # of a single file, when no dev_size is given
_DEV_SPLITS = ("validation", "dev", "test")
_TYPES = ("classification", "regression")
_INT = re.compile(r"[+-]?\d+")
_MAX_SHOWN = 40                           # characters of a user value echoed in an error


def shown(value: Any, limit: int = _MAX_SHOWN) -> str:
    """A user value in an error, bounded (yamlsafe.shown with this module's limit)."""
    return _shown_any(value, limit)


@dataclass(frozen=True)
class FileTaskOptions:
    """A parsed ``FORMAT:PATH?key=value`` task name."""

    format: str
    path: Path
    text: str = "text"
    text_pair: str | None = None          # None: "text_pair" when present
    label: str = "label"
    type: str | None = None               # None: guessed from the label values


@dataclass(frozen=True)
class _Row:
    """One raw example and where it came from (for error messages)."""

    where: str            # "<file>: line 7" / "<file>: item 3" / "<dir>: split train, row 5"
    text_a: Any
    text_b: Any
    label: Any


def parse_file_task(name: str) -> FileTaskOptions:
    """``csv:reviews.csv?text=review&label=stars`` → options. Raises DataError on an unknown key or value."""
    fmt, _, rest = name.partition(":")
    fmt = fmt.lower()
    if fmt not in FILE_FORMATS:
        raise DataError(f"task {shown(name)}: unknown file format {shown(fmt)} (known: {', '.join(FILE_FORMATS)})")
    path, _, query = rest.partition("?")
    if not path:
        raise DataError(f"task {shown(name)}: give the data as {fmt}:PATH")
    keys: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else ():
        if key not in ("text", "text_pair", "label", "type"):
            raise DataError(f"task {shown(name)}: unknown option {shown(key)} (known: text, text_pair, label, type)")
        if key in keys:
            raise DataError(f"task {shown(name)}: option {key!r} given twice")
        if not value:
            raise DataError(f"task {shown(name)}: option {key!r} is empty")
        keys[key] = value
    if keys.get("type", "classification") not in _TYPES:
        raise DataError(f"task {shown(name)}: type must be classification or regression, got {shown(keys['type'])}")
    return FileTaskOptions(fmt, Path(path), **keys)


def load_file_task(name: str, *, train_size: int | None = None, dev_size: int | None = None,
                   seed: int = 1234) -> Task:
    """The task a file name describes (module docstring). Raises DataError."""
    opts = parse_file_task(name)
    train_rows, dev_rows, class_names = _read_splits(opts)
    # the label scheme sees every row in file order, before any split or cap: classes do not depend on sizes
    labels, convert = _label_scheme(opts, train_rows + (dev_rows or []), class_names)
    if dev_rows is None:
        train_rows, dev_rows = _split(train_rows, opts.path, dev_size=dev_size, seed=seed)
    if train_size is not None and train_size < len(train_rows):
        train_rows = train_rows[:train_size]
    if dev_size is not None:
        dev_rows = dev_rows[:dev_size]
    if not train_rows or not dev_rows:
        which = "train" if not train_rows else "dev"
        raise DataError(f"{opts.path}: no {which} examples (train {len(train_rows)}, dev {len(dev_rows)})")
    train = tuple(_example(row, convert) for row in train_rows)
    dev = tuple(_example(row, convert) for row in dev_rows)
    if labels is None:
        metrics: tuple[str, ...] = ("pearson", "spearman")
    else:
        metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy", "f1_macro")
    details = {"seed": seed, "format": opts.format, "columns": {"text": opts.text, "text_pair": _pair_column(
        opts, train_rows), "label": opts.label}}
    return Task(f"{opts.format}:{opts.path.stem or opts.path.name}", train, dev, labels, metrics, str(opts.path),
                details)


# --------------------------------------------------------------------------------------------------
# Splits.

def _read_splits(opts: FileTaskOptions) -> tuple[list[_Row], list[_Row] | None, tuple[str, ...] | None]:
    """(train rows, dev rows, ClassLabel names or None) from a file, a folder of files, or an hf folder;
    dev rows None: one source, to be split."""
    if opts.format == "hf":
        return _read_hf(opts)
    path = opts.path
    if path.is_dir():
        ext = opts.format
        train_file = path / f"train.{ext}"
        dev_file = next((path / f"{split}.{ext}" for split in ("dev", "validation")
                         if (path / f"{split}.{ext}").is_file()), None)
        if not train_file.is_file() or dev_file is None:
            raise DataError(f"{path}: a {ext} task folder holds train.{ext} and dev.{ext} (or validation.{ext})")
        return _read_file(opts, train_file), _read_file(opts, dev_file), None
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return _read_file(opts, path), None, None


def _split(rows: list[_Row], source: Path, *, dev_size: int | None, seed: int) -> tuple[list[_Row], list[_Row]]:
    """Seeded shuffle, dev from the head (so a smaller dev_size is a prefix), train from the rest."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    n_dev = dev_size if dev_size is not None else max(1, round(DEV_FRACTION * len(order)))
    if n_dev >= len(order):
        raise DataError(f"{source}: {len(order)} examples leave none for training "
                        f"after {n_dev} dev examples")
    return order[n_dev:], order[:n_dev]


# --------------------------------------------------------------------------------------------------
# Files.

def _read_file(opts: FileTaskOptions, path: Path) -> list[_Row]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if opts.format in ("csv", "tsv"):
        records = _csv_records(path, text, "," if opts.format == "csv" else "\t")
    elif opts.format == "jsonl":
        records = _jsonl_records(path, text)
    else:
        records = _json_records(path, text)
    rows = [_row(opts, where, record) for where, record in records]
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows


def _csv_records(path: Path, text: str, delimiter: str) -> Iterator[tuple[str, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        if len(set(header)) != len(header):
            dup = next(c for c in header if header.count(c) > 1)
            raise DataError(f"{path}: line 1: column {shown(dup)} appears twice in the header")
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            yield f"{path}: line {reader.line_num}", dict(zip(header, row))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: not valid {'CSV' if delimiter == ',' else 'TSV'}: "
                        f"{exc}") from None


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}")
        yield f"{path}: line {lineno}", record


def _json_records(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: item {index}: expected a JSON object, got {type(record).__name__}")
        yield f"{path}: item {index}", record


def _row(opts: FileTaskOptions, where: str, record: dict) -> _Row:
    pair = opts.text_pair if opts.text_pair is not None else ("text_pair" if "text_pair" in record else None)
    values = []
    for column in (opts.text, pair, opts.label):
        if column is None:
            values.append(None)
            continue
        if column not in record:
            known = ", ".join(shown(str(k), _MAX_SHOWN) for k in list(record)[:12])
            raise DataError(f"{where}: no column {shown(column)} (columns: {known})")
        values.append(record[column])
    for column, value in ((opts.text, values[0]), (pair, values[1])):
        if column is not None and not isinstance(value, str):
            raise DataError(f"{where}: column {shown(column)}: expected text, got "
                            f"{'nothing' if value is None else type(value).__name__}")
    return _Row(where, *values)


def _pair_column(opts: FileTaskOptions, rows: Sequence[_Row]) -> str | None:
    if opts.text_pair is not None:
        return opts.text_pair
    return "text_pair" if rows and rows[0].text_b is not None else None


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets saved with save_to_disk.

def _read_hf(opts: FileTaskOptions) -> tuple[list[_Row], list[_Row] | None, tuple[str, ...] | None]:
    folder = opts.path
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder (hf:DIR is a folder written by save_to_disk)")
    try:
        import datasets
    except ImportError:
        raise DataError(f"{folder}: hf tasks need the 'datasets' package (pip install 'blockforge[hf]')") from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise DataError(f"{folder}: not a dataset saved with save_to_disk ({type(exc).__name__}: "
                        f"{shown(str(exc), 120)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DataError(f"{folder}: no 'train' split (splits: {', '.join(loaded)})")
        dev_name = next((s for s in _DEV_SPLITS if s in loaded), None)
        if dev_name is None:
            raise DataError(f"{folder}: no dev split (one of {', '.join(_DEV_SPLITS)}; splits: {', '.join(loaded)})")
        names = _class_names(folder, loaded["train"], opts.label)
        return _hf_rows(opts, folder, "train", loaded["train"]), _hf_rows(opts, folder, dev_name, loaded[dev_name]), names
    return _hf_rows(opts, folder, None, loaded), None, _class_names(folder, loaded, opts.label)


def _class_names(folder: Path, dataset: Any, column: str) -> tuple[str, ...] | None:
    feature = dataset.features.get(column)
    names = getattr(feature, "names", None)
    return tuple(str(n) for n in names) if names else None


def _hf_rows(opts: FileTaskOptions, folder: Path, split: str | None, dataset: Any) -> list[_Row]:
    where = f"{folder}: " + (f"split {split}, " if split else "")
    columns = set(dataset.column_names)
    for column in (opts.text, opts.text_pair, opts.label):
        if column is not None and column not in columns:
            raise DataError(f"{where.rstrip(', ')}: no column {shown(column)} "
                            f"(columns: {', '.join(sorted(map(str, columns))[:12])})")
    rows = [_row(opts, f"{where}row {i}", record) for i, record in enumerate(dataset)]
    if not rows:
        raise DataError(f"{where.rstrip(', ')}: no examples")
    return rows


# --------------------------------------------------------------------------------------------------
# Labels.

def _label_scheme(opts: FileTaskOptions, rows: Sequence[_Row], class_names: tuple[str, ...] | None):
    """(class names or None for regression, raw label → Example label)."""
    if class_names is not None and opts.type != "regression":
        def class_id(row: _Row) -> int:
            if isinstance(row.label, bool) or not isinstance(row.label, int) or not 0 <= row.label < len(class_names):
                raise DataError(f"{row.where}: column {shown(opts.label)}: {shown(row.label, _MAX_SHOWN)} is not a class "
                                f"id of its ClassLabel (0..{len(class_names) - 1})")
            return row.label
        return class_names, class_id
    kinds = [(row, _kind(row, opts.label)) for row in rows]
    present: dict[str, _Row] = {}
    for row, kind in kinds:
        present.setdefault(kind, row)
    if "null" in present:
        raise DataError(f"{present['null'].where}: column {shown(opts.label)}: no label")
    kind_type = opts.type or ("regression" if set(present) <= {"int", "float"} and "float" in present
                              else "classification")
    if kind_type == "regression":
        bad = next((row for row, kind in kinds if kind not in ("int", "float")), None)
        if bad is not None:
            raise DataError(f"{bad.where}: column {shown(opts.label)}: regression target "
                            f"{shown(bad.label, _MAX_SHOWN)} is not a number")

        def target(row: _Row) -> float:
            value = float(row.label)
            if not math.isfinite(value):
                raise DataError(f"{row.where}: column {shown(opts.label)}: target {shown(row.label, _MAX_SHOWN)} "
                                f"is not finite")
            return value
        return None, target
    if len(present) > 1 and not (set(present) <= {"int", "float"}):
        (k1, r1), (k2, r2) = list(present.items())[:2]
        raise DataError(f"{r2.where}: column {shown(opts.label)}: mixed label types: {shown(r1.label, _MAX_SHOWN)} "
                        f"({r1.where}) is {_KIND_NAMES[k1]}, {shown(r2.label, _MAX_SHOWN)} is {_KIND_NAMES[k2]}")
    numeric = set(present) <= {"int", "float"}
    if numeric and "float" in present:   # type=classification over non-integer numbers
        key = _class_key_float
    else:
        key = _class_key_int if numeric else _class_key_text
    values = sorted({key(row.label) for row in rows})
    names = tuple(str(v) for v in values)
    index = {v: i for i, v in enumerate(values)}
    if len(names) < 2:
        raise DataError(f"{opts.path}: column {shown(opts.label)}: only one class "
                        f"({shown(names[0])}); a classifier needs two or more")
    return names, lambda row: index[key(row.label)]


_KIND_NAMES = {"int": "an integer", "float": "a number", "text": "text", "bool": "a boolean", "null": "missing"}


def _kind(row: _Row, column: str) -> str:
    value = row.label
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return "null"
        if _INT.fullmatch(text):
            return "int"
        try:
            float(text)
        except ValueError:
            return "text"
        return "float"
    raise DataError(f"{row.where}: column {shown(column)}: a label is a number or text, got {type(value).__name__}")


def _class_key_int(value: Any) -> int:
    return int(value.strip()) if isinstance(value, str) else int(value)


def _class_key_float(value: Any) -> float:
    return float(value)


def _class_key_text(value: Any) -> str:
    return str(value).strip()


def _example(row: _Row, convert) -> Example:
    return Example(row.text_a, row.text_b, convert(row))
