"""The model-agnostic trainer: atomic files, safe checkpoints, bit-exact resume, TBPTT carry.

Resume is checked end to end through the task runner: a run stopped after 2 epochs and
resumed to 4 must end with exactly the metrics, history and weights of an uninterrupted
4-epoch run (dropout between two layers makes the RNG state matter, shuffling makes the data
order matter, Adam makes the optimizer state matter). A control run that resumes without
restoring the RNG shows the comparison can fail.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from recur.tasks.runner import train_task
from recur.train import (
    RunDir,
    Trainer,
    TrainerConfig,
    atomic_write,
    detach,
    load_checkpoint,
    save_checkpoint,
)
from recur.train import checkpoint as checkpoint_mod
from recur.train.loop import make_optimizer, scheduled_lr

# Small lagged-sine runs: 2 LSTM layers with dropout, shuffled batches, Adam.
SMALL = {"samples": 64, "seq_len": 12, "lag": 2, "hidden": 8, "layers": 2, "dropout": 0.3,
         "batch_size": 16, "seed": 3}

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- files ------------------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def half_then_crash(f):
        f.write("new, but only half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left
    atomic_write(target, lambda f: f.write("new"))
    assert target.read_text() == "new"


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_atomic_write_gives_the_mode_open_would_give(tmp_path, umask):
    before = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.json", lambda f: f.write("{}"))
        (tmp_path / "plain.json").write_text("{}")
        (tmp_path / "kept.json").write_text("{}")
        os.chmod(tmp_path / "kept.json", 0o640)
        atomic_write(tmp_path / "kept.json", lambda f: f.write("{}"))   # replaced: mode kept
    finally:
        os.umask(before)
    mode = os.stat(tmp_path / "new.json").st_mode & 0o777
    assert mode == 0o666 & ~umask == os.stat(tmp_path / "plain.json").st_mode & 0o777
    assert os.stat(tmp_path / "kept.json").st_mode & 0o777 == 0o640


def test_history_names_the_malformed_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_history({"epoch": 1, "train_loss": 0.5})
    with open(tmp_path / RunDir.METRICS_LOG, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="line 2: not a readable recur metrics log"):
        run.read_history()


@pytest.mark.parametrize("text", ["{oops", "[1, 2]", "", "\xff\xfe"])
def test_read_json_of_a_damaged_file_is_one_line_naming_it(tmp_path, text):
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as err:
        RunDir(tmp_path).read_json("config.json")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'config.json'} is not a readable recur run file: "
                              f"expected") and "\n" not in message


def test_json_files_are_strict_json(tmp_path):
    path = RunDir(tmp_path).write_json("m.json", {"loss": float("nan"), "t": torch.tensor(2.5),
                                                  "xs": (1, 2)})
    assert json.loads(path.read_text(), parse_constant=pytest.fail) == \
        {"loss": "nan", "t": 2.5, "xs": [1, 2]}


# ---- checkpoints ------------------------------------------------------------------------
def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = nn.GRU(3, 4)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 2, 3))[0].sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, epoch=2, step=7,
                           rng=[checkpoint_mod.rng_state()], history=[{"epoch": 1}])
    ckpt = load_checkpoint(path)
    assert (ckpt["epoch"], ckpt["step"], ckpt["history"]) == (2, 7, [{"epoch": 1}])
    for key, value in model.state_dict().items():
        assert torch.equal(ckpt["model"][key], value)
    assert ckpt["optimizer"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


class Payload:
    """Stands for arbitrary pickled code inside a malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": {}, "x": Payload()}, path)
    with pytest.raises(ValueError, match="not a readable recur checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "no-model"])
def test_checkpoint_damage_is_one_line_naming_the_file(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", model=nn.GRU(3, 4), optimizer=None, epoch=1,
                           step=1, rng=[], history=[])
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"format": 1, "epoch": 1}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path} is not a readable recur checkpoint: expected")
    assert "\n" not in message and "weights_only" not in message


def test_checkpoint_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a readable recur checkpoint: expected format 1"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = checkpoint_mod.rng_state()
    first = (torch.rand(3), np.random.rand(2), random.random())
    checkpoint_mod.set_rng_state(state)
    second = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0])
    assert (first[1] == second[1]).all() and first[2] == second[2]


# ---- the loop ---------------------------------------------------------------------------
def test_carry_is_passed_on_detached_and_reset_each_epoch():
    seen = []

    def step(model, batch, carry):
        seen.append(carry)
        (x,) = batch
        out = model(x).sum()
        state = out.unsqueeze(0) * 2  # part of the graph: must come back detached
        return out ** 2, state

    data = TensorDataset(torch.randn(6, 2))
    trainer = Trainer(nn.Linear(2, 1), data, TrainerConfig(epochs=2, batch_size=2, shuffle=False),
                      step=step)
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["step"] == 6
    assert seen[0] is None and seen[3] is None                 # each epoch starts afresh
    carried = [c for c in seen if c is not None]
    assert len(carried) == 4 and not any(c.requires_grad for c in carried)


def test_non_finite_loss_stops_with_advice():
    data = TensorDataset(torch.randn(4, 2))
    trainer = Trainer(nn.Linear(2, 1), data, TrainerConfig(epochs=1, batch_size=2),
                      step=lambda m, b, c: (m(b[0]).sum() * float("nan"), None))
    with pytest.raises(FloatingPointError, match="--lr"):
        trainer.fit()


def test_cosine_schedule_goes_from_lr_to_zero():
    cfg = TrainerConfig(lr=0.2, schedule="cosine")
    assert scheduled_lr(cfg, 0, 100) == pytest.approx(0.2)
    assert scheduled_lr(cfg, 50, 100) == pytest.approx(0.1)
    assert scheduled_lr(cfg, 100, 100) == pytest.approx(0.0)
    assert scheduled_lr(TrainerConfig(lr=0.2), 50, 100) == 0.2


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_is_fused_on_the_cpu_and_takes_the_unfused_steps(name):
    torch.manual_seed(0)
    cfg = TrainerConfig(optimizer=name, lr=0.01, weight_decay=0.1)
    weights = [torch.randn(5, 3, dtype=torch.float64, requires_grad=True),
               torch.randn(3, dtype=torch.float64, requires_grad=True)]
    plain = [w.detach().clone().requires_grad_() for w in weights]
    fused = make_optimizer(iter(weights), cfg)        # a generator, as model.parameters()
    assert fused.defaults["fused"] is True
    kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    reference = kind(plain, lr=0.01, weight_decay=0.1)
    for _ in range(5):
        for ws in (weights, plain):
            for w in ws:
                w.grad = None
            (ws[0].sin().sum() + (ws[1] ** 2).sum()).backward()
        fused.step()
        reference.step()
    for w, p in zip(weights, plain):
        torch.testing.assert_close(w, p, rtol=1e-12, atol=1e-12)


def test_adam_groups_are_kept_and_other_tensors_not_fused():
    groups = [{"params": iter([torch.zeros(2, requires_grad=True)]), "lr": 0.5},
              {"params": [torch.zeros(3, requires_grad=True)]}]
    opt = make_optimizer(groups, TrainerConfig(optimizer="adam"))
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert opt.param_groups[0]["lr"] == 0.5 and opt.defaults["fused"] is True
    one = torch.zeros(4, requires_grad=True)          # a group of one tensor, as torch takes
    assert make_optimizer([{"params": one}], TrainerConfig(optimizer="adam")
                          ).param_groups[0]["params"] == [one]
    named = make_optimizer([("w", one)], TrainerConfig(optimizer="adamw"))
    assert named.defaults["fused"] is True
    with pytest.raises(TypeError, match="iterable of Tensors"):   # torch's own message
        make_optimizer(one, TrainerConfig(optimizer="adam"))
    meta = make_optimizer([torch.zeros(2, device="meta", requires_grad=True)],
                          TrainerConfig(optimizer="adamw"))
    assert not meta.defaults["fused"]


def test_detach_keeps_structure():
    a = torch.ones(2, requires_grad=True) * 2
    out = detach({"h": (a, [a]), "n": 3})
    assert not out["h"][0].requires_grad and isinstance(out["h"], tuple)
    assert not out["h"][1][0].requires_grad and out["n"] == 3


# ---- resume -----------------------------------------------------------------------------
def _final(run_dir):
    run = RunDir(run_dir)
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in run.read_history()]
    return run.read_json(RunDir.METRICS), history, load_checkpoint(run.checkpoint)["model"]


def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tmp_path):
    straight, part = tmp_path / "straight", tmp_path / "part"
    train_task("lagged-sine", {**SMALL, "epochs": 4, "out": str(straight)})
    train_task("lagged-sine", {**SMALL, "epochs": 2, "out": str(part)})
    first_half = _final(part)[1]
    result = train_task("lagged-sine", {"epochs": 4, "out": str(part), "resume": True})
    assert result.config.dropout == SMALL["dropout"]    # the rest came from config.json
    metrics_a, history_a, weights_a = _final(straight)
    metrics_b, history_b, weights_b = _final(part)
    assert history_b[:2] == first_half and len(history_b) == 4
    assert metrics_a == metrics_b
    assert history_a == history_b
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


def test_resume_without_the_rng_state_differs(tmp_path, monkeypatch):
    """Control for the test above: the comparison does see a missing piece of state."""
    straight, part = tmp_path / "straight", tmp_path / "part"
    train_task("lagged-sine", {**SMALL, "epochs": 3, "out": str(straight)})
    train_task("lagged-sine", {**SMALL, "epochs": 2, "out": str(part)})
    monkeypatch.setattr("recur.train.loop.set_rng_state", lambda state: torch.manual_seed(0))
    train_task("lagged-sine", {"epochs": 3, "out": str(part), "resume": True})
    assert _final(straight)[0] != _final(part)[0]


def test_resume_refusals(tmp_path):
    with pytest.raises(ValueError, match="needs --out"):
        train_task("lagged-sine", {"resume": True})
    with pytest.raises(ValueError, match="no checkpoint"):
        train_task("lagged-sine", {"resume": True, "out": str(tmp_path / "nothing")})
    train_task("hello", {"epochs": 1, "out": str(tmp_path / "h")})
    with pytest.raises(ValueError, match="already holds a run"):
        train_task("hello", {"epochs": 1, "out": str(tmp_path / "h")})
    with pytest.raises(ValueError, match="task 'hello', not 'lagged-sine'"):
        train_task("lagged-sine", {"resume": True, "out": str(tmp_path / "h")})


def test_a_run_interrupted_mid_epoch_resumes_to_the_same_end(tmp_path, monkeypatch):
    """Ctrl-C during epoch 3 of 4 (after epoch 2's checkpoint), then ``--resume``."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    options = {**SMALL, "epochs": 4}
    train_task("lagged-sine", {**options, "out": str(straight)})
    real_epoch = Trainer.train_epoch

    def interrupted(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_task("lagged-sine", {**options, "out": str(broken)})
    assert len(RunDir(broken).read_history()) == 2 and not (broken / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    train_task("lagged-sine", {"out": str(broken), "resume": True})
    a, b = _final(straight), _final(broken)
    assert a[0] == b[0] and a[1] == b[1]
    assert all(torch.equal(a[2][k], b[2][k]) for k in a[2])
