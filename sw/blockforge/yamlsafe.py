"""The one YAML loader for every file a user hands the toolkit (specs, ratios, λ files, run configs).

``yaml.safe_load`` is safe against code execution but not against size: a few hundred bytes of nested
aliases (a "billion laughs" document) expand to gigabytes, and deep nesting reaches Python's recursion
limit. :func:`load_yaml` refuses, each as one line naming the file and line:

* files over ``max_bytes`` (1 MiB by default) — checked before reading;
* aliases (``*name``): none of our formats needs them, and they are what makes expansion possible;
* nesting deeper than ``max_depth`` (32);
* duplicate keys (``safe_load`` silently keeps the last one) and keys that are not plain scalars
  (``? [a, b]``);
* text that is not UTF-8.

Errors are raised as the caller's exception type (``SpecError`` for specs, ``UsageError`` for options
files) so every command keeps its one-line, exit-2 contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import BlockforgeError

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "load_yaml", "parse_yaml", "shown"]

MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
_SHOWN = 60


def shown(value: Any, limit: int = _SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages (a YAML node can be megabytes)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):          # ints too long to print, self-referencing containers
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Refused(Exception):
    """Raised inside the loader; turned into the caller's error type with the file name."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    max_depth = MAX_YAML_DEPTH

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):           # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(event.start_mark.line + 1, f"YAML aliases (*{event.anchor}) are not allowed")
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise _Refused(self.peek_event().start_mark.line + 1,
                               f"nesting deeper than {self.max_depth} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Refused(line, "a key must be a plain value, not a list or mapping")
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise _Refused(line, f"duplicate key {shown(key)}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path, *, error: type[BlockforgeError] = BlockforgeError, source: str | None = None,
              what: str = "file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse the YAML file ``path`` strictly (module docstring). ``source`` names it in errors (default:
    the path), ``what`` says what it is ("spec file", "ratios file"). Raises ``error`` with one line on any
    problem, including a missing or unreadable file."""
    name = source or str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{name}: is a folder, not a {what}") from None
    except OSError as exc:
        raise error(f"{name}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{name}: larger than {max_bytes:,} bytes; not a {what} this tool reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, name, error=error)


def parse_yaml(text: str, source: str, *, error: type[BlockforgeError] = BlockforgeError) -> Any:
    """Parse YAML text strictly; ``source`` names it in errors."""
    loader = None
    try:
        loader = _Loader(text)            # the reader refuses control characters already here
        return loader.get_single_data()
    except _Refused as exc:
        raise error(f"{source}: line {exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{source}: {where}invalid YAML: {problem[:120]}") from None
    except RecursionError:
        raise error(f"{source}: nesting too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
