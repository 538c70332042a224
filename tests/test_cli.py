"""The ``recur`` command: subcommands, the files of a run, output format, bad input.

Most tests call ``recur.cli.main.main(argv)`` in-process (fast); one runs ``python -m recur``
in a subprocess to check the module entry point.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from _cli import run_cli

from recur.cli.main import main
from recur.cli.progress import TerminalReporter
from recur.tasks import task_names

LESSONS = ["hello", "sine-cos", "lagged-sine", "next-frame"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hello_run(tmp_path_factory):
    """One ``recur train hello`` with the defaults, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("runs") / "hello"
    capture = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, capture
    try:
        code = main(["train", "hello", "--out", str(out)])
    finally:
        sys.stdout = sys_stdout
    return out, code, capture.getvalue()


def test_tasks_lists_every_lesson_with_one_line(capsys):
    code, out, _ = run_cli(capsys, "tasks")
    lines = out.strip().splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines] == task_names()
    assert set(LESSONS) <= set(task_names())
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # name + summary


def test_train_hello_writes_every_file_and_ends_with_a_summary(hello_run):
    out, code, stdout = hello_run
    assert code == 0
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "info.json", "metrics.jsonl", "metrics.json", "checkpoint.pt",
            "loss.png", "hello.png"} <= files
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prediction"] == "ohlol" and metrics["loss"] < 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "hello" and config["cell"] == "rnn" and config["hidden"] == 4
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == list(range(1, config["epochs"] + 1))
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("hello: prediction=ohlol loss=")
    assert "train_accuracy=1" in lines[-1] and " accuracy=" not in lines[-1]
    assert str(out) in lines[-1]
    # one plain line per epoch (stdout is not a terminal here) with the predicted string once
    assert len(lines) == config["epochs"] + 1 and "\r" not in stdout
    for epoch, line in enumerate(lines[:-1], 1):
        assert line.startswith(f"epoch {epoch}/{config['epochs']} ")
        assert line.count("prediction=") == 1 and "predicted string" not in line
    for png in ("loss.png", "hello.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_recomputes_the_final_metrics(hello_run, capsys):
    out = hello_run[0]
    code, stdout, _ = run_cli(capsys, "eval", str(out))
    assert code == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert f"prediction: {saved['prediction']}" in stdout
    assert stdout.strip().splitlines()[-1].startswith("hello: prediction=ohlol")


def test_predict_uses_the_trained_run(hello_run, capsys):
    out = hello_run[0]
    code, stdout, _ = run_cli(capsys, "predict", str(out), "--text", "hello")
    assert code == 0 and stdout.splitlines() == ["input:      hello", "prediction: ohlol"]
    code, stdout, _ = run_cli(capsys, "predict", str(out), "--text", "hello", "--json")
    assert code == 0 and json.loads(stdout) == {"input": "hello", "prediction": "ohlol"}
    code, _, err = run_cli(capsys, "predict", str(out), "--text", "hex")
    assert code == 2 and "not in the vocabulary" in err
    assert len(err.splitlines()) == 1 and "usage" not in err  # a value, not the command line
    code, _, err = run_cli(capsys, "predict", str(out), "--windows", "3")
    assert code == 2 and "unrecognized arguments: --windows" in err and "usage:" in err


def test_predict_help_without_a_run_lists_every_tasks_options(capsys):
    from recur.tasks import Task, all_tasks

    code, out, _ = run_cli(capsys, "predict", "--help")
    assert code == 0 and "--json" in out and "--device" in out
    for name, task_cls in all_tasks().items():
        if task_cls.predict is Task.predict:
            assert f"{name} runs: no predict" in out
        elif not task_cls.predict_options:
            assert f"{name} runs: no options" in out
        else:
            section = out.split(f"options of {name} runs:\n", 1)[1].split("\n\n")[0]
            for option in task_cls.predict_options:
                assert option.flag in section and option.help in section


def test_unknown_task_lists_the_valid_ones(capsys):
    code, _, err = run_cli(capsys, "train", "helo")
    assert code == 2
    assert "invalid choice: 'helo'" in err
    for name in LESSONS:
        assert name in err


@pytest.mark.parametrize("argv, message", [
    (["train", "hello", "--cell", "transformer"], "invalid choice: 'transformer'"),
    (["train", "hello", "--hidden", "many"], "invalid int value: 'many'"),
    (["train", "hello", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["train", "hello", "--source", "abc", "--target", "ab", "--out", "{tmp}/x"],
     "equal length"),
    (["train", "sine-cos", "--resume"], "--resume needs --out"),
    (["train"], "TASK"),
    (["predict"], "RUN_DIR"),
    (["eval", "{tmp}/not-a-run"], "not found"),
    (["predict", "{tmp}/not-a-run"], "not found"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=["bad-choice", "bad-int", "unknown-flag", "task-check", "resume-no-out", "no-task",
        "no-run", "eval-missing", "predict-missing", "bad-command"])
def test_bad_input_exits_2_with_a_message(capsys, tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err + out


def test_help_of_a_task_shows_its_options_and_defaults(capsys):
    code, out, _ = run_cli(capsys, "train", "sine-cos", "--help")
    assert code == 0
    assert "--points" in out and "--hidden" in out and "(default: 32)" in out
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and all(name in out for name in LESSONS)


def test_env_reports_versions_and_backends(capsys):
    from importlib.metadata import PackageNotFoundError, version

    code, out, _ = run_cli(capsys, "env")
    assert code == 0
    assert f"torch: {torch.__version__}" in out
    for key in ("python:", "triton:", "cuda:", "backends:"):
        assert key in out
    # the plans come from the modules themselves: the layer-norm LSTM's cell weights included
    assert "plan (LSTM, B=16, H=128" in out
    plan = next(line for line in out.splitlines() if line.startswith("plan (LayerNormLSTM"))
    assert "missing" not in plan and "could not be built" not in plan, plan
    lines = out.splitlines()
    for package in ("onnx", "onnxruntime", "onnxscript"):
        try:
            assert f"{package}: {version(package)}" in lines
        except PackageNotFoundError:
            assert not any(line.startswith(f"{package}:") for line in lines) \
                if package == "onnxscript" else f"{package}: not installed" in lines


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    lines = io.StringIO()
    plain = TerminalReporter(out=lines, bar=False)
    plain.on_fit_start(start_epoch=0, epochs=2, steps_per_epoch=3)
    for step in range(1, 4):
        plain.on_step(epoch=1, step=step, loss=0.5)
    plain.on_epoch_end({"epoch": 1, "step": 3, "train_loss": 0.5})
    plain.on_fit_end([])
    assert lines.getvalue() == "epoch 1/2 train_loss=0.5\n"
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert TerminalReporter().use_bar
    bar = TerminalReporter(out=io.StringIO(), bar=True)
    bar.on_fit_start(start_epoch=0, epochs=1, steps_per_epoch=2)
    bar.on_step(epoch=1, step=1, loss=0.25)
    bar.on_fit_end([])
    assert "step" in capsys.readouterr().err  # tqdm drew on stderr


@pytest.mark.slow
def test_python_dash_m_recur(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "recur", "tasks"], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == task_names()[0]
    proc = subprocess.run([sys.executable, "-m", "recur", "train", "nope"], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'nope'" in proc.stderr


def test_export_writes_the_runs_recurrent_layer_as_onnx(hello_run, tmp_path, capsys):
    import numpy as np
    import onnxruntime as ort
    import torch

    import recur
    from recur.tasks.runner import load_run

    run_dir = hello_run[0]
    out = tmp_path / "hello.onnx"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert "exported" in capsys.readouterr().out.strip().splitlines()[-1]
    _, model, _, _ = load_run(run_dir, device="cpu")
    layer = next(m for m in model.modules() if isinstance(m, recur.RNNBase))
    x = torch.randn((2, 5, layer.input_size) if layer.batch_first else (5, 2, layer.input_size))
    with torch.no_grad():
        want, h_want = layer(x)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feed = {"input": x.numpy()}  # the graph takes the layer's own layout
    if "lengths" in names:
        feed["lengths"] = np.full(2, 5, dtype=np.int32)
    for name in names:
        if name.startswith(("h0", "c0")):
            shape = [layer.num_layers * (2 if layer.bidirectional else 1), 2, layer.hidden_size]
            feed[name] = np.zeros(shape, dtype=np.float32)
    got, h_got = sess.run(None, feed)[:2]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    np.testing.assert_allclose(h_got, h_want.numpy(), atol=1e-5)


def test_export_of_a_missing_run_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "nope"), str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
    assert "recur export: error:" in capsys.readouterr().err


# ---- errors a user meets: one line, no usage, no traceback --------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "forecast", "--data", "nope.csv"], "series file not found: nope.csv"),
    (["train", "forecast", "--data", "nope.csv", "--column", "v"],
     "series file not found: nope.csv"),
    (["train", "forecast", "--data", "s.csv", "--column", "price"],
     "s.csv: no column 'price'; columns found: ['t', 'v']"),
    (["train", "forecast", "--data", "s.csv", "--column", "v"],
     "s.csv, line 3: column 'v' has 'abc', which is not a number"),
], ids=["missing-file-no-column", "missing-file", "bad-column", "not-a-number"])
def test_a_data_error_is_one_line_without_usage(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.csv").write_text("t,v\n0,1\n1,abc\n2,3\n")
    code, out, err = run_cli(capsys, *argv, "--out", "run")
    assert code == 2 and out == ""
    assert err == f"recur train forecast: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_a_command_line_mistake_still_shows_the_usage(capsys):
    code, _, err = run_cli(capsys, "train", "forecast", "--window", "many")
    assert code == 2 and err.startswith("usage: recur train forecast")
    assert err.splitlines()[-1] == ("recur train forecast: error: argument --window: "
                                    "invalid int value: 'many'")


class Pickled:
    """A checkpoint entry that only an unrestricted pickle load would rebuild."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _damage(run, what):
    ckpt = run / "checkpoint.pt"
    if what == "truncated-checkpoint":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        return ckpt, "is not a readable recur checkpoint: expected a complete torch.save file"
    if what == "pickled-checkpoint":
        torch.save({"format": 1, "model": {}, "x": Pickled()}, ckpt)
        return ckpt, "is not a readable recur checkpoint: expected tensors and plain values"
    if what == "other-weights":
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "hidden": 7}))
        return ckpt, "is not a readable recur checkpoint of this run: expected the weights"
    name = {"bad-config": "config.json", "bad-info": "info.json"}[what]
    (run / name).write_text('{"task": "hello",')
    return run / name, "is not a readable recur run file: expected JSON"


DAMAGE = ["truncated-checkpoint", "pickled-checkpoint", "other-weights", "bad-config", "bad-info"]


# --resume rebuilds info.json from the data (it never reads it), so bad-info is not a case there
@pytest.mark.parametrize("command, what", [
    (c, w) for c in ("eval", "predict", "export", "resume") for w in DAMAGE
    if (c, w) != ("resume", "bad-info")])
def test_a_damaged_run_is_one_line_naming_the_file(hello_run, tmp_path, monkeypatch, capsys,
                                                   what, command):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(hello_run[0], tmp_path / "run")
    path, message = _damage(tmp_path / "run", what)
    argv = {"eval": ["eval", "run"], "predict": ["predict", "run"],
            "export": ["export", "run", "m.onnx"],
            "resume": ["train", "hello", "--out", "run", "--resume", "--epochs", "20"]}[command]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and "this must never run" not in out
    assert len(err.splitlines()) == 1, err
    assert f"{path.relative_to(tmp_path)} {message}" in err
    assert "Traceback" not in err and "weights_only" not in err and "usage" not in err


# ---- files: the mode any file the user writes gets ---------------------------------------
@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_run_files_get_the_mode_the_umask_gives(capsys, tmp_path, monkeypatch, umask):
    monkeypatch.chdir(tmp_path)
    before = os.umask(umask)
    try:
        code, _, err = run_cli(capsys, "train", "hello", "--epochs", "2", "--out", "run")
        assert code == 0, err
        code, _, err = run_cli(capsys, "export", "run", "m.onnx")
        assert code == 0, err
    finally:
        os.umask(before)
    files = [*(tmp_path / "run").iterdir(), tmp_path / "m.onnx"]
    assert {"checkpoint.pt", "config.json", "metrics.jsonl", "loss.png"} <= {p.name for p in files}
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert modes == {p.name: oct(0o666 & ~umask) for p in files}


def test_export_help_says_where_it_writes(capsys):
    code, out, _ = run_cli(capsys, "export", "--help")
    assert code == 0
    assert "relative to the current directory" in " ".join(out.split())


# ---- predict: a table for people ----------------------------------------------------------
def test_predict_table_layouts():
    from recur.cli.table import MAX_CELL, format_result

    assert format_result({"series": "s", "next_value": 83.123456}).splitlines() == [
        "series:     s", "next_value: 83.12"]
    # lists of one length side by side (a table), a lone list on one line
    assert format_result({"t": [1.0, 2.5], "y": [0.125, -3], "mse": 1e-5,
                          "unknown": ["a", "b", "c"]}).splitlines() == [
        "mse:     1e-05", "unknown: a, b, c", "", "  t      y", "---  -----",
        "  1  0.125", "2.5     -3"]
    # a list of dicts (e.g. one row per text): one table, nested dicts as key.sub columns
    long = "word " * 30
    rows = format_result([{"text": long, "label": "neg", "p": {"neg": 0.9, "pos": 0.1},
                           "unknown_words": ["x", "y"]},
                          {"text": "good", "label": "pos", "p": {"neg": 0.2, "pos": 0.8},
                           "unknown_words": []}]).splitlines()
    assert rows[0].split() == ["text", "label", "p.neg", "p.pos", "unknown_words"]
    assert rows[2].split()[-2:] == ["x,", "y"] and rows[2].index("...") == MAX_CELL - 3
    assert rows[3].split() == ["good", "pos", "0.2", "0.8"]
    # frames (a list of matrices) side by side
    frames = format_result({"generated": [[[0, 1], [0, 0]], [[0, 0], [1, 0]]]}).splitlines()
    assert frames == ["generated: 2 x 2 x 2", "[0]   [1]", "0 1   0 0", "0 0   1 0"]
