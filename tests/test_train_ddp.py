"""Multi-process training: ``torchrun --nproc_per_node 2 -m recur train ...`` on CPU (gloo).

Two processes with 8 items per batch each see, at every step, the two halves of the 16 items
a single process with batches of 16 sees (``DistributedSampler`` deals the same permutation
out in turn), and DDP averages their gradients: so the 2-process run must reproduce the
single-process run's losses up to float rounding. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from recur.tasks.runner import train_task
from recur.train import RunDir

ARGS = {"samples": 64, "seq_len": 12, "lag": 2, "hidden": 8, "epochs": 2, "seed": 1}


def flags(options: dict) -> list[str]:
    return [part for k, v in options.items() for part in (f"--{k.replace('_', '-')}", str(v))]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend for torch.distributed")
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "recur", "train", "lagged-sine", *flags(ARGS), "--batch-size", "8",
           "--out", str(ddp_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("lagged-sine: loss=") and "2 processes" in lines[-1]
    assert sum(line.startswith("lagged-sine:") for line in lines) == 1   # rank 0 only
    assert sum(line.startswith("epoch 1/2") for line in lines) == 1
    config = json.loads((ddp_dir / "config.json").read_text())
    assert config["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # nothing else written

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_task("lagged-sine", {**ARGS, "batch_size": 16, "out": str(single_dir)})
    finally:
        torch.set_num_threads(threads)
    ddp = RunDir(ddp_dir).read_history()
    single = RunDir(single_dir).read_history()
    # 64 items, 2 shards of 32, batches of 8: 4 steps per epoch per process, like 64 / 16
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == [4, 8]
    for a, b in zip(ddp, single, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert RunDir(ddp_dir).read_json("metrics.json")["loss"] == \
        pytest.approx(RunDir(single_dir).read_json("metrics.json")["loss"], rel=1e-4)
