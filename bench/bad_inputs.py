"""Benchmark: bad inputs through the real command line, counted the way issue 17's audit counted them.

Builds a corpus of bad inputs in a temp folder (specs, other YAML, images, model folders, data and size
flags, output paths and resume, report / sim / estimate flags) and runs each as ``blockforge ARGS`` in a
forked child of one process that has already imported the CLI (a fresh process per case, without paying
the start-up each time), with a timeout and the child's peak RSS. Each outcome is

- clean: exit status 2, one line on stderr that names what is wrong (the file, key, offset or flag the
  case expects), no traceback, and no output left where the command was told to write;
- traceback: an exception escaped the CLI's boundary;
- wrong: anything else — exit 0 or 1 where the input is bad, an output left behind, more than one line,
  the expected name missing, a hang past the timeout, or more than 500 MB.

Prints one JSON line per category and one total line; ``--verbose`` prints every case that is not clean.

    .venv/bin/python bench/bad_inputs.py [--verbose] [--timeout 60]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TILE8 = (Path(__file__).resolve().parents[1] / "specs" / "tile8.yaml").read_text()
MAX_RSS_MB = 500


@dataclass
class Case:
    category: str
    name: str
    argv: list[str]
    names: tuple[str, ...] = ()          # substrings the one-line error must contain
    outputs: tuple[Path, ...] = ()       # must not exist afterwards
    setup: object = None                 # callable run in the child before the command (e.g. a FIFO writer)
    result: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The corpus.

def _spec_text(**replace: str) -> str:
    text = TILE8
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def spec_cases(root: Path) -> list[Case]:
    bad = {
        "empty": "", "not-a-mapping": "- 1\n- 2\n", "binary": "\x00\x01\x02garbage", "tabs": "name:\ttile8\n\tblock: 1\n",
        "bad-yaml": "name: [unclosed\n", "rows-zero": _spec_text(**{"rows: 8": "rows: 0"}),
        "rows-negative": _spec_text(**{"rows: 8": "rows: -8"}), "rows-huge": _spec_text(**{"rows: 8": f"rows: {2**60}"}),
        "rows-float": _spec_text(**{"rows: 8": "rows: 8.5"}), "rows-string": _spec_text(**{"rows: 8": "rows: eight"}),
        "rows-bool": _spec_text(**{"rows: 8": "rows: true"}), "rows-list": _spec_text(**{"rows: 8": "rows: [8]"}),
        "rows-null": _spec_text(**{"rows: 8": "rows: null"}), "cols-1e38": _spec_text(**{"cols: 8": "cols: 1e38"}),
        "tokens-1e38": _spec_text(**{"max_tokens: 64": "max_tokens: 1e38"}),
        "tokens-huge": _spec_text(**{"max_tokens: 64": "max_tokens: 100000000"}),
        "features-huge": _spec_text(**{"max_in_features: 1536": f"max_in_features: {2**40}"}),
        "bus-huge": _spec_text(**{"weight_bus_bits: 64": "weight_bus_bits: 1048576"}),
        "bus-odd": _spec_text(**{"weight_bus_bits: 64": "weight_bus_bits: 63"}),
        "clock-zero": _spec_text(**{"clock_mhz: 150": "clock_mhz: 0"}),
        "clock-400-digits": _spec_text(**{"clock_mhz: 150": "clock_mhz: 1" + "0" * 400}),
        "clock-inf": _spec_text(**{"clock_mhz: 150": "clock_mhz: .inf"}),
        "clock-nan": _spec_text(**{"clock_mhz: 150": "clock_mhz: .nan"}),
        "acc-bits-99": _spec_text(**{"acc_bits: 32": "acc_bits: 99"}),
        "weight-bits-7": _spec_text(**{"weight_bits: 8": "weight_bits: 7"}),
        "rounding-unknown": _spec_text(**{"rounding: half_up": "rounding: stochastic"}),
        "latency-huge": _spec_text(**{"read_latency: 1": "read_latency: 1000"}),
        "name-newline": _spec_text(**{"name: tile8": 'name: "a\\nmodule evil; endmodule"'}),
        "name-traversal": _spec_text(**{"name: tile8": "name: ../../escaped"}),
        "name-long": _spec_text(**{"name: tile8": "name: " + "n" * 200}),
        "name-empty": _spec_text(**{"name: tile8": 'name: ""'}),
        "description-huge": _spec_text(**{'"8x8 block tiles, 64 MACs/cycle"': '"' + "d" * 5000 + '"'}),
        "unknown-key": TILE8 + "colour: blue\n", "duplicate-key": TILE8 + "clock_mhz: 200\n",
        "missing-block": _spec_text(**{"block:\n  rows: 8\n  cols: 8\n": ""}),
        "complex-key": TILE8 + "? [a, b]\n: 1\n",
        "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "name: *i\n",
        "deep-nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
        "device-unknown": _spec_text(**{"device: LFE5U-85F": "device: XC7Z999"}),
        "non-utf8": None,
    }
    cases = []
    for name, text in bad.items():
        path = root / "specs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.write_bytes(b"name: \xff\xfe tile8\n")
        else:
            path.write_text(text)
        cases.append(Case("specs", name, ["spec", "check", str(path)], names=(str(path),)))
    return cases


def yaml_cases(root: Path) -> list[Case]:
    configs = {"tokens-zero": "tokens: 0\n", "seed-float": "seed: 1.5\n", "distill-string": "distill: 'yes'\n",
               "train-size-negative": "train_size: -3\n", "unknown-key": "colour: blue\n", "list": "- 1\n",
               "duplicate": "seed: 1\nseed: 2\n", "alias": "a: &x 1\nseed: *x\n", "preset-unknown": "preset: huge\n",
               "simulator-unknown": "simulator: modelsim\n", "sparsity-one": "sparsity: 1.5\n",
               "huge-int": "seed: 1" + "0" * 400 + "\n"}
    ratios = {"duplicate": "'*query*': 0.5\n'*query*': 0.6\n", "over-one": "'*': 1.5\n", "string": "'*': lots\n",
              "alias": "a: &x 0.5\nb: *x\n"}
    cases = []
    for folder, flag, command, files in (("configs", "--config", "run", configs), ("ratios", "--ratios", "prune", ratios)):
        for name, text in files.items():
            path = root / folder / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            out = root / f"out-{folder}" / name
            cases.append(Case("other YAML", f"{command} {flag} {name}", [command, flag, str(path), "-o", str(out)],
                              names=(str(path),), outputs=(out,)))
    return cases


def image_cases(root: Path) -> list[Case]:
    from blockforge.image import write_image
    from blockforge.spec import load_spec
    from blockforge_hw.testing import random_layer

    spec = load_spec("tile8")
    rng = np.random.default_rng(0)
    good = root / "images" / "good.bfim"
    good.parent.mkdir(parents=True, exist_ok=True)
    write_image(good, [random_layer(spec, rng, 16, 24, density=0.5, name="a"),
                       random_layer(spec, rng, 24, 16, density=0.5, name="b")], spec)
    data = good.read_bytes()
    variants: dict[str, bytes] = {"empty": b"", "text": b"hello world\n", "zeros": bytes(4096)}
    for cut in (4, 8, 12, 16, 32, 64, 128, len(data) // 2, len(data) - 1):
        variants[f"truncated-{cut}"] = data[:cut]
    flip_rng = np.random.default_rng(1)
    for i, offset in enumerate(sorted(flip_rng.choice(len(data), 50, replace=False))):
        mutated = bytearray(data)
        mutated[offset] ^= 1 << int(flip_rng.integers(8))
        variants[f"bitflip-{offset}"] = bytes(mutated)
    for value in (0, 2**31, 2**40, 2**63, 2**64 - 1):           # declared lengths after the magic
        for at in (8, 12, 16):
            mutated = bytearray(data)
            mutated[at:at + 8] = struct.pack("<Q", value)
            variants[f"length-{at}-{value}"] = bytes(mutated)
    variants["appended"] = data + b"extra"
    variants["doubled"] = data + data
    cases = []
    for name, blob in variants.items():
        path = root / "images" / f"{name}.bfim"
        path.write_bytes(blob)
        cases.append(Case("images", name, ["inspect", str(path)], names=(str(path),)))
    fifo = root / "images" / "fifo.bfim"
    os.mkfifo(fifo)
    cases.append(Case("images", "fifo", ["inspect", str(fifo)], names=(str(fifo),)))
    cases.append(Case("images", "directory", ["inspect", str(root / "images")], names=(str(root / "images"),)))
    cases.append(Case("images", "missing", ["inspect", str(root / "images" / "nope.bfim")], names=("nope.bfim",)))
    sparse = root / "images" / "sparse-1TiB.bfim"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 40)
    cases.append(Case("images", "sparse 1 TiB non-image", ["inspect", str(sparse)], names=(str(sparse),)))
    return cases, good


def model_cases(root: Path, image: Path) -> list[Case]:
    from blockforge.models import resolve_model

    source = Path(resolve_model("default"))
    folders = {}

    def folder(name: str) -> Path:
        path = root / "models" / name
        path.mkdir(parents=True, exist_ok=True)
        for f in source.iterdir():
            if f.is_file():
                (path / f.name).write_bytes(f.read_bytes())
        folders[name] = path
        return path

    weights = next(p.name for p in source.iterdir() if p.suffix in (".safetensors", ".bin"))
    (folder("truncated-weights") / weights).write_bytes((source / weights).read_bytes()[:1000])
    (folder("garbage-weights") / weights).write_bytes(b"\x80\x04garbage" * 100)
    (folder("empty-weights") / weights).write_bytes(b"")
    (folder("bad-config") / "config.json").write_text("{not json")
    (folder("config-list") / "config.json").write_text("[1, 2]")
    (folder("config-unknown-type") / "config.json").write_text('{"model_type": "nonsense"}')
    (folder("no-config") / "config.json").unlink()
    path = folder("no-weights")
    (path / weights).unlink()
    path = folder("bin-garbage")
    (path / weights).unlink()
    (path / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not a zip")
    cases = []
    out = root / "out-models"
    out.mkdir()
    for name, path in folders.items():
        cases.append(Case("models", f"evaluate {name}", ["evaluate", "--model", str(path), "--task", "default"],
                          names=(str(path),)))
        cases.append(Case("models", f"export {name}", ["export", "--model", str(path), "--spec", "tile8",
                                                       "-o", str(out / f"{name}.bfim")],
                          names=(str(path),), outputs=(out / f"{name}.bfim",)))
    for name in ("no-such-model", "bert-base-uncased"):
        cases.append(Case("models", f"bare name {name}", ["evaluate", "--model", name, "--task", "default"],
                          names=(name,)))
    return cases


def data_cases(root: Path) -> list[Case]:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"empty.csv": "", "header-only.csv": "text,label\n", "no-label.csv": "text\nhello\n",
             "one-class.csv": "text,label\n" + "a,1\n" * 20, "ragged.csv": 'text,label\n"unclosed,1\n',
             "bad.json": "{not json", "list-of-ints.json": "[1, 2, 3]", "bad.jsonl": '{"text": "a", "label": 1}\n{oops\n',
             "binary.csv": None}
    cases = []
    for name, text in files.items():
        path = data / name
        if text is None:
            path.write_bytes(b"\xff\xfe\x00garbage")
        else:
            path.write_text(text)
        fmt = name.rsplit(".", 1)[1]
        cases.append(Case("data / size flags", f"task {name}", ["evaluate", "--model", "default", "--task",
                                                                 f"{fmt}:{path}"], names=(name,)))
    for name, (task, named) in {
            "unknown task": ("nonsense", "nonsense"), "glue without dir": ("sst2", "sst2"),
            "glue missing dir": ("sst2:/nope", "/nope"), "csv missing": (f"csv:{data}/missing.csv", "missing.csv"),
            "unknown option": (f"csv:{data}/one-class.csv?colour=1", "colour"), "hf missing": (f"hf:{data}/nope", "nope"),
            "empty": ("", "task")}.items():
        cases.append(Case("data / size flags", name, ["evaluate", "--model", "default", "--task", task],
                          names=(named,)))
    for flag in ("--train-size", "--dev-size"):
        for value in ("0", "-3", "1.5", "abc", "1" + "0" * 30):
            out = root / "pruned-size" / f"{flag}{value[:8]}"
            named = "size" if len(value) < 8 else flag[2:].split("-")[0]     # huge: "... needed for N train"
            cases.append(Case("data / size flags", f"prune {flag} {value[:12]}", ["prune", flag, value, "-o", str(out)],
                              names=(named,), outputs=(out,)))
    for value in ("0", "-3"):
        cases.append(Case("data / size flags", f"evaluate --dev-size {value}",
                          ["evaluate", "--model", "default", "--task", "default", "--dev-size", value],
                          names=("size",)))
    return cases


def output_cases(root: Path, image: Path) -> list[Case]:
    a_file = root / "a-file"
    a_file.write_text("I am a file")
    under = a_file / "sub"
    ro = root / "read-only"
    ro.mkdir()
    os.chmod(ro, 0o555)
    cases = []
    targets = {"under a file": under / "x", "is a directory": root}
    if os.geteuid() != 0:                        # root writes into read-only folders anyway
        targets["read-only folder"] = ro / "x"
    commands = {
        "hw verilog -o": lambda t: ["hw", "verilog", "--spec", "tile8", "-o", str(t)],
        "report -o": lambda t: ["report", str(image), "--spec", "tile8", "-o", str(t)],
        "export --hex": lambda t: ["export", "--model", "default", "--spec", "tile8", "-o", str(root / "e.bfim"),
                                   "--hex", str(t)],
        "export --manifest": lambda t: ["export", "--model", "default", "--spec", "tile8", "-o", str(root / "e.bfim"),
                                        "--manifest", str(t)],
        "export -o": lambda t: ["export", "--model", "default", "--spec", "tile8", "-o", str(t)],
        "prune -o": lambda t: ["prune", "-o", str(t)],
        "prune --checkpoint-dir": lambda t: ["prune", "-o", str(root / "p"), "--checkpoint-dir", str(t)],
        "run -o": lambda t: ["run", "-o", str(t)],
        "sim --work-dir": lambda t: ["sim", str(image), "--spec", "tile8", "--work-dir", str(t)],
        "estimate --json >": None,
    }
    for cname, make in commands.items():
        if make is None:
            continue
        for tname, target in targets.items():
            if tname == "is a directory" and cname in ("hw verilog -o", "export --hex", "prune -o", "run -o",
                                                        "prune --checkpoint-dir", "sim --work-dir"):
                continue                          # folders are what these take
            cases.append(Case("output paths", f"{cname} {tname}", make(target),
                              names=(a_file.name if tname == "under a file" else root.name,)))
    return cases


def resume_cases(root: Path) -> list[Case]:
    """Outputs under a file and resume-store damage on a fake run folder: all must fail before work or
    rerun; the cheap ones here fail before any training."""
    cases = []
    a_file = root / "resume-file"
    a_file.write_text("x")
    for name in ("prune", "export", "int8_eval", "rtl_layers", "rtl_eval", "estimate", "report"):
        out = a_file / name
        cases.append(Case("atomicity / resume", f"run -o under a file ({name})", ["run", "-o", str(out)],
                          names=("resume-file",)))
    for flag in ("--tokens", "--rtl-eval-examples", "--threads", "--sim-workers", "--seed", "--sparsity"):
        for value in ("-1", "abc"):
            out = root / "resume-runs" / f"{flag}{value}"
            cases.append(Case("atomicity / resume", f"run {flag} {value}", ["run", flag, value, "-o", str(out)],
                              names=(flag.strip("-").split("-")[0],), outputs=(out,)))
    for sparsity in ("1.0", "-0.1", "nan"):
        out = root / "resume-runs" / f"sparsity{sparsity}"
        cases.append(Case("atomicity / resume", f"prune --sparsity {sparsity}", ["prune", "--sparsity", sparsity,
                                                                                  "-o", str(out)],
                          names=("sparsity",), outputs=(out,)))
    return cases


def flag_cases(root: Path, image: Path) -> list[Case]:
    rtl = root / "rtl-lines"
    rtl.mkdir()
    lines = {"list": "[1, 2]", "broken": "{oops", "negative": '{"layer": "a", "rtl_cycles": -5}',
             "float": '{"layer": "a", "rtl_cycles": 1.5}', "bool": '{"layer": "a", "rtl_cycles": true}',
             "unknown-layer": '{"layer": "zzz", "rtl_cycles": 5}', "twice": '{"layer": "a", "rtl_cycles": 5}\n' * 2,
             "binary": None}
    cases = []
    for name, text in lines.items():
        path = rtl / f"{name}.jsonl"
        if text is None:
            path.write_bytes(b"\xff\xfe\x00")
        else:
            path.write_text(text + "\n")
        out = root / "reports" / f"{name}.html"
        cases.append(Case("report / sim / estimate flags", f"report --rtl {name}",
                          ["report", str(image), "--spec", "tile8", "-o", str(out), "--rtl", str(path)],
                          names=(str(path),), outputs=(out,)))
    for tokens in ("0", "65", "-1", "abc"):
        cases.append(Case("report / sim / estimate flags", f"estimate --tokens {tokens}",
                          ["estimate", str(image), "--spec", "tile8", "--tokens", tokens], names=("--tokens",)))
    cases.append(Case("report / sim / estimate flags", "estimate on the wrong spec",
                      ["estimate", str(image), "--spec", "tile16"], names=("tile16",)))
    cases.append(Case("report / sim / estimate flags", "sim unknown layer",
                      ["sim", str(image), "--spec", "tile8", "--layer", "nope"], names=("nope",)))
    cases.append(Case("report / sim / estimate flags", "sim --tokens 0",
                      ["sim", str(image), "--spec", "tile8", "--tokens", "0"], names=("--tokens",)))
    cases.append(Case("report / sim / estimate flags", "sim --stall-weights 300",
                      ["sim", str(image), "--spec", "tile8", "--stall-weights", "300"], names=("--stall-weights",)))
    cases.append(Case("report / sim / estimate flags", "sim --workers 0",
                      ["sim", str(image), "--spec", "tile8", "--workers", "0"], names=("--workers",)))
    acts = root / "acts.npz"
    acts.write_bytes(b"PK\x03\x04 broken zip")
    cases.append(Case("report / sim / estimate flags", "sim --activations broken zip",
                      ["sim", str(image), "--spec", "tile8", "--activations", str(acts)], names=("acts.npz",)))
    return cases


# --------------------------------------------------------------------------------------------------
# Running a case in a forked child.

def _child(case: Case, err_path: Path) -> None:
    from blockforge_app.cli import main

    sys.stderr = open(err_path, "w")
    sys.stdout = io.StringIO()
    try:
        code = main(case.argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        traceback.print_exc()
        code = 99
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


def run_case(case: Case, work: Path, timeout: float) -> dict:
    err_path = work / f"err-{id(case)}.txt"
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(case, err_path)
    status, usage, hung = None, None, False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - started > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            hung = True
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    err = err_path.read_text(errors="replace") if err_path.exists() else ""
    rss_mb = usage.ru_maxrss / 1024
    lines = [line for line in err.splitlines() if line.strip()]
    left = [str(p) for p in case.outputs if p.exists()]
    if "Traceback" in err or code == 99:
        outcome = "traceback"
    elif (code == 2 and len(lines) == 1 and all(n in lines[0] for n in case.names) and not left and not hung
          and rss_mb <= MAX_RSS_MB):
        outcome = "clean"
    else:
        outcome = "wrong"
    return {"category": case.category, "case": case.name, "outcome": outcome, "exit": code, "hung": hung,
            "seconds": round(seconds, 2), "rss_mb": round(rss_mb, 1), "stderr": lines[:3], "left": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every case that is not clean")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as hung")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch  # noqa: F401  (imported once here, so forked cases do not each pay for it)
    import transformers  # noqa: F401

    import blockforge_app.cli  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bf-bad-inputs-") as tmp:
        root = Path(tmp)
        images, good = image_cases(root)
        corpus = (spec_cases(root) + yaml_cases(root) + images + model_cases(root, good) + data_cases(root)
                  + resume_cases(root) + output_cases(root, good) + flag_cases(root, good))
        work = root / "stderr"
        work.mkdir()
        results = [run_case(case, work, args.timeout) for case in corpus]
        os.chmod(root / "read-only", 0o755)
    categories = list(dict.fromkeys(r["category"] for r in results))
    for category in categories + ["total"]:
        rows = [r for r in results if category in ("total", r["category"])]
        print(json.dumps({"bench": "bad_inputs", "category": category, "tried": len(rows),
                          **{k: sum(r["outcome"] == k for r in rows) for k in ("clean", "traceback", "wrong")},
                          "worst_rss_mb": max(r["rss_mb"] for r in rows),
                          "worst_seconds": max(r["seconds"] for r in rows)}))
    if args.verbose:
        for r in results:
            if r["outcome"] != "clean":
                print(json.dumps(r), file=sys.stderr)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
