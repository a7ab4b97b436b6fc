"""Tasks from users' own files (csv / tsv / json / jsonl / hf): splits, label schemes, metrics, one-line
errors, and a 3-class CSV task pruned, exported and evaluated end to end through the CLI."""

from __future__ import annotations

import json
import random

import pytest

from blockforge.data import DataError, compute_metrics, load_task
from blockforge.filetasks import parse_file_task

COLOURS = {"red": "fire blood cherry ruby brick rose".split(),
           "green": "grass leaf moss lime fern olive".split(),
           "blue": "sky sea ocean navy cobalt azure".split()}


def _colour_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = sorted(COLOURS)
    return [{"text": " ".join(rng.choice(COLOURS[names[i % 3]]) for _ in range(rng.randint(2, 6))),
             "label": names[i % 3]} for i in range(n)]


def _write_csv(path, rows, columns=("text", "label"), delimiter=","):
    lines = [delimiter.join(columns)] + [delimiter.join(str(r[c]) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Loading.

def test_csv_single_file_three_classes_seeded_split(tmp_path):
    path = _write_csv(tmp_path / "colours.csv", _colour_rows(60))
    task = load_task(f"csv:{path}")
    assert task.labels == ("blue", "green", "red")             # sorted names = class ids
    assert task.metrics == ("accuracy", "f1_macro")
    assert (len(task.train), len(task.dev)) == (54, 6)          # 10% dev without a dev size
    assert not task.is_pair and not task.is_regression and task.num_labels == 3
    assert {e.label for e in task.train} == {0, 1, 2}
    again = load_task(f"csv:{path}")
    assert again.train == task.train and again.dev == task.dev  # the split is seeded
    other_seed = load_task(f"csv:{path}", seed=7)
    assert other_seed.dev != task.dev
    # a smaller dev size is a prefix of a larger one, and train_size never reaches into dev
    big, small = load_task(f"csv:{path}", dev_size=20), load_task(f"csv:{path}", dev_size=8, train_size=5)
    assert small.dev == big.dev[:8] and len(small.train) == 5
    assert not set(small.train) & set(big.dev[:8])
    assert task.describe()["columns"] == {"text": "text", "text_pair": None, "label": "label"}


def test_folder_of_tsv_files_and_named_columns(tmp_path):
    rows = [{"review": r["text"], "stars": 1 + i % 5} for i, r in enumerate(_colour_rows(30))]
    _write_csv(tmp_path / "train.tsv", rows[:20], ("review", "stars"), "\t")
    _write_csv(tmp_path / "validation.tsv", rows[20:], ("review", "stars"), "\t")
    task = load_task(f"tsv:{tmp_path}?text=review&label=stars")
    assert (len(task.train), len(task.dev)) == (20, 10)
    assert task.labels == ("1", "2", "3", "4", "5")
    assert task.train[0].label == rows[0]["stars"] - 1


def test_jsonl_pairs_with_float_targets_is_regression(tmp_path):
    path = tmp_path / "sts.jsonl"
    rng = random.Random(1)
    path.write_text("".join(json.dumps({"text": f"a {i}", "text_pair": f"b {i}", "label": rng.uniform(0, 5)}) + "\n"
                            for i in range(20)))
    task = load_task(f"jsonl:{path}", dev_size=4)
    assert task.is_regression and task.labels is None and task.num_labels == 1
    assert task.metrics == ("pearson", "spearman")
    assert task.is_pair and task.dev[0].text_b.startswith("b ")
    assert all(isinstance(e.label, float) for e in task.train)


def test_json_integer_labels_sort_numerically_and_type_overrides(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"sentence": f"s{i}", "y": [2, 10, 1][i % 3]} for i in range(12)]))
    task = load_task(f"json:{path}?text=sentence&label=y")
    assert task.labels == ("1", "2", "10")
    assert load_task(f"json:{path}?text=sentence&label=y&type=regression").is_regression


def test_binary_text_labels_use_accuracy_and_f1(tmp_path):
    rows = [{"text": f"t{i}", "label": ("no", "yes")[i % 2]} for i in range(10)]
    task = load_task(f"csv:{_write_csv(tmp_path / 'b.csv', rows)}")
    assert task.labels == ("no", "yes") and task.metrics == ("accuracy", "f1")


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["sad", "calm", "glad"])})
    rows = _colour_rows(24)
    data = {"text": [r["text"] for r in rows], "label": [i % 3 for i in range(24)]}
    split = datasets.Dataset.from_dict(data, features=features)
    datasets.DatasetDict({"train": split.select(range(18)), "validation": split.select(range(18, 24))}) \
        .save_to_disk(str(tmp_path / "dd"))
    task = load_task(f"hf:{tmp_path / 'dd'}")
    assert task.labels == ("sad", "calm", "glad")               # ClassLabel names and ids kept
    assert (len(task.train), len(task.dev)) == (18, 6) and task.train[4].label == 1
    split.save_to_disk(str(tmp_path / "single"))
    single = load_task(f"hf:{tmp_path / 'single'}", dev_size=5)
    assert (len(single.train), len(single.dev)) == (19, 5)


def test_macro_f1():
    assert compute_metrics(["f1_macro"], [0, 1, 2, 2], [0, 1, 2, 1])["f1_macro"] == pytest.approx(
        (1 + 2 / 3 + 2 / 3) / 3)


def test_parse_options():
    opts = parse_file_task("csv:some/file.csv?text=a&text_pair=b&label=c&type=classification")
    assert (opts.format, str(opts.path), opts.text, opts.text_pair, opts.label, opts.type) == (
        "csv", "some/file.csv", "a", "b", "c", "classification")


# --------------------------------------------------------------------------------------------------
# Bad files: one DataError line naming the file and where.

def _bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("name,content,task_suffix,match", [
    ("a.csv", "text,stars\nhi,1\nho,2\n", "", r"a\.csv: line 2: no column 'label' \(columns: 'text', 'stars'\)"),
    ("a.csv", "", "", r"a\.csv: empty file"),
    ("a.csv", "text,label\n", "", r"a\.csv: no examples"),
    ("a.csv", "text,label\nhi,1\nho\n", "", r"a\.csv: line 3: 1 fields, the header has 2"),
    ("a.csv", "text,label\nhi,pos\nho,1\nha,neg\n", "",
     r"a\.csv: line 3: column 'label': mixed label types: 'pos' \(.*line 2\) is text, '1' is an integer"),
    ("a.csv", b"text,label\nhi,1\nh\xffo,0\n", "", r"a\.csv: line 3: not UTF-8 text \(byte 17\)"),
    ("a.csv", "text,label\nhi,1\nho,1\n", "", r"a\.csv: column 'label': only one class \('1'\)"),
    ("a.csv", "text,label\nhi,1\nho,\n", "", r"a\.csv: line 3: column 'label': no label"),
    ("a.csv", "text,text,label\nhi,ho,1\n", "", r"a\.csv: line 1: column 'text' appears twice"),
    ("a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 2\n', "",
     r"a\.jsonl: line 2 column \d+: not valid JSON"),
    ("a.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', "", r"a\.jsonl: line 2: expected a JSON object, got list"),
    ("a.json", '{"text": "a"}', "", r"a\.json: expected a JSON array of objects, got dict"),
    ("a.json", '[{"text": "a", "label": 0}, {"text": 5, "label": 1}]', "",
     r"a\.json: item 1: column 'text': expected text, got int"),
    ("a.json", '[{"text": "a", "label": 0.5}, {"text": "b", "label": "Infinity"}]', "?type=regression",
     r"a\.json: item 1: column 'label': target 'Infinity' is not finite"),
    ("a.json", '[{"text": "a", "label": [1]}, {"text": "b", "label": 1}]', "",
     r"a\.json: item 0: column 'label': a label is a number or text, got list"),
    ("a.csv", "text,label\nhi,1\nho,0\n", "?colour=red", r"unknown option 'colour'"),
    ("a.csv", "text,label\nhi,1\nho,0\n", "?type=ordinal", r"type must be classification or regression"),
])
def test_bad_files_are_one_line_naming_file_and_place(tmp_path, name, content, task_suffix, match):
    path = _bad(tmp_path, name, content)
    with pytest.raises(DataError, match=match) as info:
        load_task(f"{name.split('.')[1]}:{path}{task_suffix}", dev_size=1)
    assert "\n" not in str(info.value)


def test_sizes_and_missing_paths(tmp_path):
    path = _write_csv(tmp_path / "c.csv", _colour_rows(9))
    with pytest.raises(DataError, match=r"9 examples leave none for training after 9 dev examples"):
        load_task(f"csv:{path}", dev_size=9)
    for size in (0, -3):
        with pytest.raises(DataError, match=r"dev_size must be an integer ≥ 1"):
            load_task(f"csv:{path}", dev_size=size)
        with pytest.raises(DataError, match=r"train_size must be an integer ≥ 1"):
            load_task("default", train_size=size)
    with pytest.raises(DataError, match=r"no such data file"):
        load_task(f"csv:{tmp_path / 'nope.csv'}")
    with pytest.raises(DataError, match=r"holds train.csv and dev.csv"):
        load_task(f"csv:{tmp_path}")
    with pytest.raises(DataError, match=r"unknown task .*csv:PATH"):
        load_task("parquet:x")
    with pytest.raises(DataError, match=r"not a dataset saved with save_to_disk"):
        pytest.importorskip("datasets")
        load_task(f"hf:{tmp_path}")


# --------------------------------------------------------------------------------------------------
# End to end: a 3-class CSV task through prune, export and evaluate.

def test_three_class_csv_prunes_exports_and_evaluates(tmp_path, capsys):
    from blockforge_app.cli import main
    from blockforge.image import read_image
    from blockforge.models import load_tokenizer
    from test_prune_pipeline import _save_tiny

    model_dir = _save_tiny(tmp_path / "tiny", "bert", load_tokenizer("default"))
    data = _write_csv(tmp_path / "colours.csv", _colour_rows(120))
    task = f"csv:{data}"
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), "--task", task, "--spec", "tile8", "--sparsity", "0.5",
                 "--method", "magnitude-retrain", "--epochs", "1", "0", "1", "--lr", "1e-3", "--retrain-lr", "1e-3",
                 "--batch-size", "16", "--max-length", "16", "--dev-size", "24", "--no-progress",
                 "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["block_sparsity"] == 0.5
    assert set(summary["metrics"]["final"]) == {"accuracy", "f1_macro"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "blue", "1": "green", "2": "red"}

    image = tmp_path / "colours.bfim"
    assert main(["export", "--model", str(out), "--spec", "tile8", "--task", task, "--calib", "16",
                 "--max-length", "16", "-o", str(image)]) == 0
    capsys.readouterr()
    assert read_image(image).layers

    assert main(["evaluate", "--model", str(out), "--task", task, "--dev-size", "24", "--spec", "tile8",
                 "--max-length", "16"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["dev_examples"] == 24 and ev["zero_block_fraction"] == 0.5
    assert ev["metrics"]["accuracy"] == pytest.approx(summary["metrics"]["final"]["accuracy"])


def test_cli_bad_task_file_is_one_line_exit_2(tmp_path, capsys):
    from blockforge_app.cli import main

    path = _bad(tmp_path, "bad.csv", "text,label\nhi,pos\nho,1\n")
    status = main(["evaluate", "--model", "default", "--task", f"csv:{path}"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "bad.csv: line 3: column 'label': mixed label types" in err
