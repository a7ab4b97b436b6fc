"""Two-process CPU data parallel (torchrun, gloo): masks and weights stay identical across ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from blockforge.prune.pipeline import PruneConfig, prune_model
    from blockforge.prune.schedule import Schedule
    from blockforge.spec import load_spec

    model_dir, task_dir, out = sys.argv[1:4]
    torch.set_num_threads(1)
    result = prune_model(PruneConfig(
        model=model_dir, task=f"sst2:{task_dir}", spec=load_spec("tile8"), sparsity=0.5, method="bsp", seed=0,
        schedule=Schedule(dense_epochs=1, bsp_epochs=1, retrain_epochs=1, learning_rate=1e-3,
                          bsp_learning_rate=1e-3, retrain_learning_rate=1e-3, reweight_period=2),
        batch_size=8, max_length=16, progress=False))
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.state_dict().items()):
        digest.update(name.encode()); digest.update(tensor.detach().contiguous().numpy().tobytes())
    masks = hashlib.sha256()
    for name, mask in sorted(result.block_masks.items()):
        masks.update(name.encode()); masks.update(mask.numpy().tobytes())
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"weights": digest.hexdigest(), "masks": masks.hexdigest(), "processes": result.report["processes"],
                   "steps": result.report["phases"]["bsp"]["steps"],
                   "zero_blocks": result.report["block_sparsity"]["zero_blocks"]}, fh)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_keeps_ranks_identical(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from blockforge.models import load_tokenizer

    tokenizer = load_tokenizer("default")
    model_dir = tmp_path / "tiny"
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=72)
    BertForSequenceClassification(config).bert.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    task = tmp_path / "SST-2"
    task.mkdir()
    for name, n in (("train.tsv", 64), ("dev.tsv", 16)):
        rows = ["sentence\tlabel"] + [f"{'good fine' if i % 2 else 'bad poor'} film number {i}\t{i % 2}"
                                      for i in range(n)]
        (task / name).write_text("\n".join(rows) + "\n")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(tmp_path / "worker.py"), str(model_dir), str(task), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["processes"] == 2
    assert ranks[0]["steps"] == 64 // (8 * 2)  # each rank takes half of every global batch
    assert ranks[0]["masks"] == ranks[1]["masks"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["zero_blocks"] == ranks[1]["zero_blocks"] > 0
