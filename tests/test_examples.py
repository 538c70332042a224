"""The lessons in examples/ run as scripts and print what they teach.

Each example runs as ``python examples/NAME.py`` in a subprocess with warnings as errors (as
a reader would run it), and the test checks its printed output: the shapes it shows, and for
hello_ohlol that both models end on "ohlol".
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
LESSONS = ["rnn_basics", "hello_ohlol"]


def run_example(name: str) -> str:
    """Run examples/NAME.py in a fresh interpreter and return its stdout."""
    proc = subprocess.run([sys.executable, "-W", "error", str(EXAMPLES / f"{name}.py")],
                          capture_output=True, text=True, timeout=180, cwd=EXAMPLES.parent,
                          check=False)
    assert proc.returncode == 0, f"{name}.py failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize("name", LESSONS)
def test_docstring_says_how_to_run(name):
    doc = ast.get_docstring(ast.parse((EXAMPLES / f"{name}.py").read_text()))
    assert doc, f"examples/{name}.py has no module docstring"
    assert f"python examples/{name}.py" in doc


def test_rnn_basics_shapes():
    out = run_example("rnn_basics")
    # 1. the cell, stepped by hand: three steps of [B=1, I=4] -> [B=1, H=2]
    steps = re.findall(r"step (\d): input (\[.*?\]) -> hidden (\[.*?\])", out)
    assert steps == [(str(t), "[1, 4]", "[1, 2]") for t in range(3)]
    assert "sequence [3, 1, 4]" in out
    assert "RNN with the cell's weights ends in the same state: True" in out
    # 2. two layers over the whole sequence
    assert re.search(r"output \[3, 1, 2\] = \[seq, batch, hidden\]", out)
    assert re.search(r"h_n +\[2, 1, 2\] = \[layers, batch, hidden\]", out)
    assert "output[-1] == h_n[-1]: True" in out
    # 3. weight shapes side by side: RNN, LSTM (4x rows), GRU (3x rows)
    table = {m.group(1): re.findall(r"\[[\d, ]+\]", m.group(2))
             for m in re.finditer(r"^\s+(weight_\w+|bias_\w+)\s+(.*)$", out,
                                  re.MULTILINE)}
    assert table == {
        "weight_ih_l0": ["[2, 4]", "[8, 4]", "[6, 4]"],
        "weight_hh_l0": ["[2, 2]", "[8, 2]", "[6, 2]"],
        "bias_ih_l0": ["[2]", "[8]", "[6]"],
        "bias_hh_l0": ["[2]", "[8]", "[6]"],
    }
    assert "LSTM/RNN = 4" in out and "GRU/RNN = 3" in out


def test_hello_ohlol_learns():
    out = run_example("hello_ohlol")
    rows = re.findall(r"^\s+(\d+)\s+([helo]{5})\s+loss ([\d.]+)\s+([helo]{5})\s+loss ([\d.]+)$",
                      out, re.MULTILINE)
    assert [int(r[0]) for r in rows] == list(range(1, 11)), out
    for _, cell_pred, cell_loss, rnn_pred, rnn_loss in rows:
        # same start, same computation: the hand loop and RNN learn the same
        assert cell_pred == rnn_pred
        assert float(cell_loss) == pytest.approx(float(rnn_loss), abs=2e-3)
    assert rows[0][1] != "ohlol", "nothing to learn: the untrained model already answers"
    assert rows[-1][1] == "ohlol"
    assert float(rows[-1][2]) < float(rows[0][2]) / 10
    assert out.strip().splitlines()[-1] == 'final: RNNCell "ohlol", RNN "ohlol"'
