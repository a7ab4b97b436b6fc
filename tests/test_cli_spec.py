"""The installed `blockforge` console script: spec subcommands, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from blockforge_app.cli import main

BIN = Path(sys.executable).parent / "blockforge"


def run(*args: str) -> subprocess.CompletedProcess:
    exe = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "blockforge_app.cli"]
    return subprocess.run(exe + list(args), capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_three_import_roots():
    proc = subprocess.run([sys.executable, "-c", "import blockforge, blockforge_hw, blockforge_sim"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_spec_show_prints_spec_and_derived_figures():
    proc = run("spec", "show", "tile16")
    assert proc.returncode == 0, proc.stderr
    assert "name: tile16" in proc.stdout
    assert "macs_per_cycle: 256" in proc.stdout
    assert "tile_bytes: 256" in proc.stdout
    assert "tile_load_cycles: 16" in proc.stdout


def test_spec_show_json(capsys):
    assert main(["spec", "show", "row1x48", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spec"]["block"] == {"rows": 1, "cols": 48}
    assert out["derived"]["tile_words"] == 6


def test_spec_check_ok_and_list(capsys):
    assert main(["spec", "check", "tile8"]) == 0
    assert ": ok (tile8, 8x8 blocks" in capsys.readouterr().out
    assert main(["spec", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "row1x48", "row1x96", "tile16", "tile8"]


def test_spec_check_unknown_key_exits_2_with_one_line(tmp_path):
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "specs" / "tile8.yaml").read_text())
    data["buffers"]["max_batch"] = 4
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run("spec", "check", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"blockforge: error: {path}: buffers.max_batch: unknown key")
    assert "Traceback" not in proc.stderr


def test_spec_check_missing_file_exits_2(capsys):
    assert main(["spec", "check", "does/not/exist.yaml"]) == 2
    assert capsys.readouterr().err == "blockforge: error: does/not/exist.yaml: no such spec file\n"
