"""Hostile and malformed inputs (issue 17's audit classes): each is one line of the project's own error
type, fast and small, whatever the file holds. Images have their own fuzzing in test_image.py."""

from __future__ import annotations

import json
import time

import pytest

from blockforge.errors import SpecError, UsageError
from blockforge.spec import load_spec, resolve_spec_path
from blockforge.yamlsafe import MAX_YAML_BYTES, load_yaml

TILE8 = resolve_spec_path("tile8").read_text()

ALIAS_BOMB = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and len(message) < 400, message[:500]
    return message


@pytest.mark.parametrize("text, match", [
    (TILE8.replace('description: "8x8 block tiles, 64 MACs/cycle"', "description: *i") + ALIAS_BOMB,
     r"line \d+: YAML aliases \(\*\w\) are not allowed"),
    ("name: tile8\n" + "x: " + "[" * 5000 + "]" * 5000 + "\n", r"line 2: nesting deeper than 32 levels"),
    ("? [a, b]\n: 1\n", r"line 1: a key must be a plain value"),
    (TILE8 + "clock_mhz: 100\n", r"line \d+: duplicate key 'clock_mhz'"),
    (TILE8.replace("name: tile8", "name: \"x\\nmodule evil(); endmodule\""), r"name: expected a name"),
    (TILE8.replace("name: tile8", "name: ../../escaped"), r"name: expected a name"),
    (TILE8.replace("max_tokens: 64", "max_tokens: 1e38"), r"max_tokens: expected an integer in \[1, 65536\]"),
    (TILE8.replace("rows: 8", "rows: " + str(2 ** 60)), r"block.rows: expected an integer in \[1, 1024\]"),
    (TILE8.replace("clock_mhz: 150", "clock_mhz: 1" + "0" * 400), r"clock_mhz: expected a number in \(0, 10000\]"),
    (TILE8.replace("rows: 8", "rows: 1024"), r"block: 1024x8 = 8,192 MACs per cycle, more than the 4,096"),
    ("name: \x00\x01garbage", r"invalid YAML: unacceptable character #x0000"),
])
def test_hostile_specs_are_one_line_fast_and_small(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert time.perf_counter() - start < 2.0
    assert _one_line(info).startswith(str(path))


def test_oversized_and_non_utf8_yaml(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_YAML_BYTES + b"\n")
    with pytest.raises(SpecError, match=r"big\.yaml: larger than 1,048,576 bytes"):
        load_spec(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(TILE8.encode().replace(b"8x8 block", b"8\xd78 block"))
    with pytest.raises(SpecError, match=r"latin\.yaml: not UTF-8 text \(byte \d+\)"):
        load_spec(latin)
    with pytest.raises(UsageError, match=r"no such ratios file"):
        load_yaml(tmp_path / "none.yaml", error=UsageError, what="ratios file")
    with pytest.raises(UsageError, match=r"is a folder, not a ratios file"):
        load_yaml(tmp_path, error=UsageError, what="ratios file")


def test_ratios_and_lambda_files_use_the_strict_loader(tmp_path):
    from blockforge.prune.schedule import load_lambdas, load_ratios

    names = ["bert.encoder.layer.0.attention.self.query"]
    bomb = tmp_path / "r.yaml"
    bomb.write_text(ALIAS_BOMB)
    with pytest.raises(UsageError, match=r"r\.yaml: line \d+: YAML aliases"):
        load_ratios(bomb, names, 0.5)
    dup = tmp_path / "d.yaml"
    dup.write_text(f"{names[0]}: 0.5\n{names[0]}: 0.7\n")
    with pytest.raises(UsageError, match=r"d\.yaml: line 2: duplicate key"):
        load_ratios(dup, names, 0.5)
    huge = tmp_path / "h.yaml"
    huge.write_text(f"{names[0]}: 1{'0' * 400}\n")
    with pytest.raises(UsageError) as info:
        load_ratios(huge, names, 0.5)
    assert "block sparsity must be a number in [0, 1)" in _one_line(info)
    with pytest.raises(UsageError) as info:
        load_lambdas(huge, names)
    assert "lambda must be a number in [0, 1000]" in _one_line(info)


def test_a_relative_spec_path_reaches_the_simulator_as_data(tmp_path, monkeypatch):
    """The simulator runs in another folder: the bench gets the spec itself (Spec.to_dict), not a path."""
    from blockforge.spec import spec_from_dict
    from blockforge_sim.simulator import RtlSimulator

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.yaml").write_text(TILE8.replace("name: tile8", "name: mine"))
    monkeypatch.chdir(tmp_path)
    spec = load_spec("specs/mine.yaml")
    session = RtlSimulator(spec, work_dir="wd")
    assert session.work_dir.is_absolute()
    data = json.loads(json.dumps(spec.to_dict()))         # what the session file carries
    monkeypatch.chdir(tmp_path / "specs")                 # elsewhere: no path left to resolve
    assert spec_from_dict(data, source=spec.source) == spec


# --------------------------------------------------------------------------------------------------
# Models, output paths, signals.

def test_bare_model_names_are_not_sent_to_the_hub(tmp_path):
    from blockforge.models import resolve_model

    with pytest.raises(UsageError, match=r"^bert-base-uncasd: no such model folder \(for a model on the Hugging "
                                         r"Face Hub write hub:bert-base-uncasd\)$"):
        resolve_model("bert-base-uncasd")
    assert resolve_model("hub:google/bert_uncased_L-2_H-128_A-2") == "google/bert_uncased_L-2_H-128_A-2"
    with pytest.raises(UsageError, match="not a Hugging Face Hub model name"):
        resolve_model("hub:a/b/c")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="a file"):
        resolve_model(tmp_path / "file")


@pytest.mark.parametrize("damage", ["truncate", "garbage-bin", "bad-json"])
def test_damaged_model_folders_are_one_line(tmp_path, damage):
    import shutil

    from blockforge.models import load_model, resolve_model

    folder = tmp_path / "m"
    shutil.copytree(resolve_model("default"), folder)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage-bin":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    else:
        (folder / "config.json").write_text("{ not json")
    with pytest.raises(UsageError, match=r"m: cannot load (model|tokenizer)") as info:
        load_model(folder, labels=("a", "b"))
    _one_line(info)


def test_output_paths_are_checked_before_work(tmp_path):
    from blockforge.fsutil import check_output

    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match=r"^-o .*afile/out: .*afile is a file, not a folder$"):
        check_output(tmp_path / "afile" / "out", folder=True)
    with pytest.raises(UsageError, match=r"^--hex .*afile: exists and is not a folder$"):
        check_output(tmp_path / "afile", folder=True, flag="--hex")
    with pytest.raises(UsageError, match=r"is a folder, not a file"):
        check_output(tmp_path)
    assert check_output(tmp_path / "new" / "deeper" / "x.bfim") == tmp_path / "new" / "deeper" / "x.bfim"


def test_cli_output_under_a_file_is_one_line_before_training(tmp_path, capsys):
    from blockforge_app.cli import main

    (tmp_path / "afile").write_text("x")
    start = time.perf_counter()
    status = main(["prune", "--model", "default", "--no-progress", "-o", str(tmp_path / "afile" / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "is a file, not a folder" in err
    assert time.perf_counter() - start < 5          # refused before the model is even loaded
    status = main(["hw", "verilog", "--spec", "tile8", "-o", str(tmp_path / "afile" / "x.v")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("blockforge: error: "), err


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import argparse
    import os
    import signal

    import blockforge_app.cli as cli
    from blockforge.fsutil import atomic_write

    target = tmp_path / "model.bfim"
    target.write_bytes(b"old and whole")

    def handler(args):
        def chunks():
            yield b"new, half"
            os.kill(os.getpid(), signal.SIGTERM)
            yield b" written"
        atomic_write(target, chunks())

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main([]) == 143
    assert "terminated" in capsys.readouterr().err
    assert target.read_bytes() == b"old and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bfim"]
    assert signal.getsignal(signal.SIGTERM) == before              # the handler is restored


def test_image_reader_refuses_fifos_and_checks_the_magic_first(tmp_path, capsys):
    import os

    from blockforge.errors import ImageError
    from blockforge.image import read_image
    from blockforge_app.cli import main

    fifo = tmp_path / "pipe.bfim"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"pipe\.bfim: not a regular file$"):
        read_image(fifo)
    assert main(["inspect", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.write(b"NOTIMAGE")
        fh.truncate(1 << 40)                     # a sparse terabyte: reading it first would never end
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"big\.bin: not a blockforge image \(magic b'NOTIMAGE'"):
        read_image(big)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------------------------------
# Found by bench/bad_inputs.py (the corpus re-run).

def _cli(argv, capsys):
    from blockforge_app.cli import main

    status = main(argv)
    return status, capsys.readouterr().err.strip()


def test_usage_errors_are_one_line(capsys):
    for argv, needle in ((["run", "--tokens", "abc", "-o", "x"], "argument --tokens: invalid int value: 'abc'"),
                         (["nonsense"], "invalid choice: 'nonsense'"), (["hw", "frob"], "invalid choice: 'frob'")):
        with pytest.raises(SystemExit) as info:
            _cli(argv, capsys)
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1 and needle in err and "--help" in err, err


@pytest.mark.parametrize("text, needle", [
    ("seed: 1" + "0" * 400 + "\n", "seed: must be an integer in [0, 4294967295]"),
    ("sparsity: 1.5\n", "sparsity: block sparsity must be a number in [0, 1), got 1.5"),
])
def test_run_config_errors_leave_no_output_folder(tmp_path, capsys, text, needle):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    status, err = _cli(["run", "--config", str(config), "-o", str(tmp_path / "out")], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_prune_seed_out_of_range_is_a_usage_error():
    from blockforge.prune import PruneConfig

    with pytest.raises(UsageError, match=r"seed: must be an integer in \[0, 4294967295\], got -1"):
        PruneConfig(seed=-1)


def test_huge_size_flags_are_counted_exactly():
    from blockforge.data import DataError, load_task

    with pytest.raises(DataError, match=r"500000000000000000000000001000 of each needed for 10{30} train"):
        load_task("default", train_size=10 ** 30)


def test_sim_refuses_a_broken_activation_archive_before_building(tmp_path, capsys):
    from blockforge.image import write_image
    from blockforge_hw.testing import random_layer
    import numpy as np

    spec = load_spec("tile8")
    image = tmp_path / "m.bfim"
    write_image(image, [random_layer(spec, np.random.default_rng(0), 8, 16, density=1.0, name="l")], spec)
    acts = tmp_path / "acts.npz"
    acts.write_bytes(b"PK\x03\x04 broken zip")
    start = time.perf_counter()
    status, err = _cli(["sim", str(image), "--spec", "tile8", "--activations", str(acts),
                        "--work-dir", str(tmp_path / "wd")], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "cannot read activations" in err and str(acts) in err
    assert time.perf_counter() - start < 5 and not (tmp_path / "wd").exists()
