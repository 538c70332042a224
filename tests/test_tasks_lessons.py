"""The classic lessons as tasks, the task interface, and ``recur diagnose gradients``.

Each lesson runs with its defaults (or a smaller data set where the defaults take longer than
a few seconds) and must reach the result the lesson promises.
"""

from __future__ import annotations

import json

import pytest
import torch

import recur.tasks as tasks_pkg
from recur.cli.main import main
from recur.tasks import Option, Task, get_task, resolve_config
from recur.tasks.diagnose import adding_problem, diagnose_gradients
from recur.tasks.models import SeqModel
from recur.tasks.next_frame import border_cycle, moving_frames
from recur.tasks.runner import eval_run, predict_run, train_task

PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the interface ----------------------------------------------------------------------
def test_config_precedence_common_then_task_defaults_then_overrides():
    hello = get_task("hello")
    cfg = resolve_config(hello)
    assert (cfg.task, cfg.cell, cfg.hidden, cfg.epochs, cfg.source) == \
        ("hello", "rnn", 4, 15, "hello")
    assert cfg.dropout == 0.0                                  # a common default
    cfg = resolve_config(hello, {"hidden": 8, "source": "abc", "epochs": None})
    assert (cfg.hidden, cfg.source, cfg.epochs) == (8, "abc", 15)  # None = not given
    with pytest.raises(ValueError, match="unknown option 'points'.*valid: .*source"):
        resolve_config(hello, {"points": 3})
    with pytest.raises(ValueError, match="--cell: invalid choice 'cnn'"):
        resolve_config(hello, {"cell": "cnn"})


def test_option_check_converts_and_refuses():
    assert Option("n", int, 1).check("3") == 3
    assert Option("x", float).check(2) == 2.0
    with pytest.raises(ValueError, match="--n: expected int"):
        Option("n", int).check("three")
    with pytest.raises(ValueError, match="expected true/false"):
        Option("flag", bool).check("yes")
    assert Option("seq_len").flag == "--seq-len"


def test_registry_imports_every_listed_module(monkeypatch):
    """A listed task module that does not exist is an error, not silently skipped."""
    monkeypatch.setattr(tasks_pkg, "TASK_MODULES", ("hello", "no_such_task_module"))
    monkeypatch.setattr(tasks_pkg, "_loaded", False)
    with pytest.raises(ModuleNotFoundError, match="no_such_task_module"):
        tasks_pkg.all_tasks()
    monkeypatch.setattr(tasks_pkg, "TASK_MODULES", ("hello",))
    assert "hello" in tasks_pkg.all_tasks()
    with pytest.raises(tasks_pkg.UnknownTaskError, match="choose from .*hello"):
        get_task("no-such-task")


@pytest.mark.parametrize("cell,options,cls", [
    ("gru", {}, "GRU"), ("lstm", {"zoneout": 0.1}, "VariantLSTM"),
    ("gru", {"recurrent_dropout": 0.2}, "VariantGRU"), ("rnn_relu", {}, "VariantRNN"),
    ("layernorm_lstm", {}, "LayerNormLSTM"), ("layernorm_gru", {"zoneout": 0.1},
                                              "LayerNormGRU"),
])
def test_every_shipped_cell_and_variant_option_builds(cell, options, cls):
    from recur.tasks.models import make_recurrent

    m = make_recurrent(cell, 3, 4, **options)
    assert type(m).__name__ == cls and m.batch_first
    assert m(torch.randn(2, 5, 3))[0].shape == (2, 5, 4)
    with pytest.raises(ValueError, match="cell must be one of"):
        make_recurrent("peephole", 3, 4)


def test_a_task_trains_a_layernorm_cell_with_zoneout(tmp_path):
    """--cell layernorm_lstm --zoneout 0.1: learns, recorded by name, evaluated back."""
    result = train_task("lagged-sine", {"out": str(tmp_path), "samples": 128, "epochs": 4,
                                        "cell": "layernorm_lstm", "zoneout": 0.1})
    cfg = result.config
    assert (cfg.cell, cfg.zoneout) == ("layernorm_lstm", 0.1)
    first, last = result.history[0]["val_loss"], result.metrics["loss"]
    assert last < first
    _, metrics = eval_run(tmp_path, device="cpu")
    assert metrics["loss"] == pytest.approx(last, rel=1e-5)


def test_every_registered_task_declares_what_the_cli_needs():
    for name, task_cls in tasks_pkg.all_tasks().items():
        assert issubclass(task_cls, Task) and task_cls.name == name
        assert task_cls.summary and "\n" not in task_cls.summary
        resolve_config(task_cls)                  # its defaults are valid values


def test_seq_model_shapes_and_lengths():
    model = SeqModel(3, 2, cell="gru", hidden=5, layers=2, bidirectional=True)
    y, h = model(torch.randn(4, 7, 3))
    assert y.shape == (4, 7, 2) and h.shape == (4, 4, 5)
    pooled = SeqModel(3, 2, cell="lstm", hidden=5, pool="last")
    lengths = torch.tensor([7, 3, 1, 5])
    x = torch.randn(4, 7, 3)
    y, _ = pooled(x, lengths=lengths)
    alone, _ = pooled(x[1:2, :3])                  # row 1 cut at its length: same output
    assert y.shape == (4, 2) and torch.allclose(y[1], alone[0], atol=1e-6)


# ---- the lessons ------------------------------------------------------------------------
@pytest.mark.slow
def test_sine_cos_defaults_reach_the_lesson_target(tmp_path):
    result = train_task("sine-cos", {"out": str(tmp_path)})
    cfg = result.config
    assert (cfg.cell, cfg.hidden, cfg.epochs * cfg.windows) == ("rnn", 32, 1000)
    assert result.history[-1]["step"] == 1000
    assert result.metrics["loss"] <= 1e-3
    assert (tmp_path / "sine_cos.png").read_bytes()[:8] == PNG
    task, ahead = predict_run(tmp_path, {"windows": 2})
    assert len(ahead["prediction"]) == 2 * cfg.points and ahead["mse"] <= 1e-2


def test_sine_cos_refuses_to_be_split_across_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="cannot be split across processes"):
        train_task("sine-cos", {})


def test_lagged_sine_learns_the_delay(tmp_path):
    result = train_task("lagged-sine", {"out": str(tmp_path), "samples": 256, "epochs": 10})
    first, last = result.history[0]["val_loss"], result.metrics["loss"]
    assert last < 0.02 and last < first / 10
    assert (tmp_path / "lagged_sine.png").read_bytes()[:8] == PNG
    _, metrics = eval_run(tmp_path, device="cpu")
    assert metrics["loss"] == pytest.approx(last, rel=1e-5)


@pytest.mark.slow
def test_next_frame_generates_the_walk(tmp_path):
    result = train_task("next-frame", {"out": str(tmp_path)})
    assert result.metrics["gen_accuracy"] == 1.0 and result.metrics["gen_mse"] < 0.01
    assert (tmp_path / "next_frame.png").read_bytes()[:8] == PNG
    _, walk = predict_run(tmp_path, {"direction": "ccw", "start": 2, "generate": 5})
    assert walk["gen_accuracy"] == 1.0 and len(walk["generated"]) == 5


def test_moving_frames_walk_the_border():
    assert border_cycle(2) == [0, 1, 3, 2]
    assert border_cycle(3) == [0, 1, 2, 5, 8, 7, 6, 3]
    frames = moving_frames(1, 5, 2, torch.Generator(), direction=torch.tensor([-1]),
                           start=torch.tensor([0]))
    assert frames.argmax(-1).tolist() == [[0, 2, 3, 1, 0]]
    assert frames.sum(-1).eq(1).all()


# ---- why gates matter -------------------------------------------------------------------
def test_adding_problem_targets():
    x, y = adding_problem(8, 30, torch.Generator().manual_seed(0))
    assert x.shape == (8, 30, 2) and (x[..., 1].sum(1) == 2).all()
    assert torch.allclose(y, (x[..., 0] * x[..., 1]).sum(1))
    assert (x[:, :15, 1].sum(1) == 1).all()            # one marker in each half


def test_rnn_gradient_vanishes_far_faster_than_lstm(tmp_path):
    report = diagnose_gradients(seq_len=100, hidden=32, batch_size=16, train_steps=10,
                                out=str(tmp_path))
    ratio = {cell: r["ratio"] for cell, r in report["cells"].items()}
    assert ratio["rnn"] < 1e-12                        # gone after 100 steps
    assert ratio["rnn"] < 1e-6 * ratio["lstm"]         # far smaller than through the LSTM
    assert ratio["lstm"] > 1e-12
    saved = json.loads((tmp_path / "gradients.json").read_text())
    assert len(saved["cells"]["gru"]["norms"]) == 100
    assert set(saved["cells"]["lstm"]["eigenvalues"]) == {"i", "f", "g", "o"}
    assert (tmp_path / "gradients.png").read_bytes()[:8] == PNG


def test_diagnose_from_the_command_line(tmp_path, capsys):
    code = main(["diagnose", "gradients", "--seq-len", "20", "--hidden", "8", "--batch-size",
                 "4", "--train-steps", "0", "--cells", "rnn,gru", "--out", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and out[-1].startswith("diagnose gradients: T=20")
    assert "rnn=" in out[-1] and "gru=" in out[-1] and "lstm" not in out[-1]
    with pytest.raises(SystemExit) as exit_:
        main(["diagnose", "gradients", "--cells", "rnn,cnn", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "cnn" in capsys.readouterr().err


def test_classify_and_forecast_models_take_every_cell_and_the_variant_options():
    from recur.tasks.classify_model import ConvRecurrentClassifier, SequenceClassifier
    from recur.tasks.forecast import ForecastNet

    net = ForecastNet("layernorm_gru", 8, 1, horizon=2, members=2, zoneout=0.1)
    assert [type(r).__name__ for r in net.rnns] == ["LayerNormGRU"] * 2
    assert net.rnns[0].zoneout == (0.1,)
    clf = SequenceClassifier(3, 2, cell="lstm", hidden=4, recurrent_dropout=0.2)
    assert type(clf.rnn).__name__ == "VariantLSTM" and clf.rnn.recurrent_dropout == 0.2
    conv = ConvRecurrentClassifier(3, 2, cell="layernorm_lstm", hidden=4, channels=4)
    assert type(conv.rnn).__name__ == "LayerNormLSTM"
