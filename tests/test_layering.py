"""The import graph keeps the layers one-way (docs/index.md "Layering"):
blockforge (sw) <- blockforge_hw <- blockforge_sim <- blockforge_app, and the light core modules load
neither torch nor amaranth, directly or through other project modules. Every import statement counts,
including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"blockforge": ("sw", 0), "blockforge_hw": ("hw", 1), "blockforge_sim": ("sim", 2), "blockforge_app": ("app", 3)}
LIGHT = ("spec", "image", "reference", "estimate", "layer", "hexfiles", "quant")
HEAVY = ("torch", "amaranth")


def _modules() -> dict[str, Path]:
    mods = {}
    for package, (folder, _) in LAYERS.items():
        for path in sorted((ROOT / folder / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = _modules()
GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    root = module.split(".")[0]
    return LAYERS[root][1] if root in LAYERS else None


def test_imports_only_go_down_the_layers():
    upward = [f"{name} imports {target}" for name, targets in GRAPH.items() for target in sorted(targets)
              if _layer(target) is not None and _layer(target) > _layer(name)]
    assert not upward, upward


@pytest.mark.parametrize("light", LIGHT)
def test_light_core_modules_import_no_torch_or_amaranth(light):
    start = f"blockforge.{light}"
    seen, stack, path_to = {start}, [start], {start: [start]}
    while stack:
        module = stack.pop()
        for target in GRAPH.get(module, ()):
            assert target.split(".")[0] not in HEAVY, " -> ".join(path_to[module] + [target])
            if target in MODULES and target not in seen:
                seen.add(target)
                path_to[target] = path_to[module] + [target]
                stack.append(target)
