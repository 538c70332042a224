"""``scripts/gpu_check.sh --dry-run``: the one-command GPU check run on the CPU under
Triton's interpreter at tiny sizes, so the script is tested before its first GPU run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                 reason="triton is not installed"),
              pytest.mark.slow]
STEPS = ["env", "smoke", "correctness", "repro", "speed", "speed-ln"]


def _run(out: Path, *args: str, budget: int = 1200, timeout: int = 1300, min_step: int = 15):
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, GPU_CHECK_BUDGET=str(budget),
               GPU_CHECK_MIN_STEP=str(min_step))
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


def _status(out: Path) -> dict[str, str]:
    lines = (out / "status.txt").read_text().splitlines()
    return {line.split()[0]: line.split()[1] for line in lines}


def test_dry_run_every_step_passes(tmp_path):
    res = _run(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    status = _status(tmp_path)
    assert status == {**{s: "ok" for s in STEPS}, "gpu-tests": "SKIP"}, res.stdout
    correctness = json.loads((tmp_path / "correctness.json").read_text())
    rows = correctness["rows"]
    assert correctness["meta"]["dry_run"] is True
    covered = {(r["cell"], r["path"], r["dtype"]) for r in rows}
    assert covered >= {(c, p, d) for c in ("RNN", "LSTM", "LSTM+proj", "GRU", "LayerNormLSTM",
                                           "LayerNormGRU")
                       for p in ("small", "grid", "stream") for d in ("float32", "bfloat16")}
    assert all(r["ok"] and r["max_rel_err"] <= r["rtol"] for r in rows)
    assert {r["reverse"] for r in rows} == {False, True}
    assert any(r["zoneout"] for r in rows) and any(r["h_mask"] for r in rows)
    repro = json.loads((tmp_path / "repro.json").read_text())["rows"]
    assert repro and all(r["ok"] and not r["differ"] for r in repro)
    speed = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert {(r["cell"], r["dtype"]) for r in speed} == {
        (c, d) for c in ("LSTM", "GRU") for d in ("float32", "bfloat16")}
    assert all(r["recur_fwdbwd_us_per_step"] and r["torch_fwdbwd_us_per_step"] for r in speed)
    ln = [json.loads(x) for x in (tmp_path / "speed-ln.jsonl").read_text().splitlines()]
    assert ln and all(r["triton_fwdbwd_us_per_step"] and r["eager_fwdbwd_us_per_step"]
                      for r in ln)


def test_budget_cuts_steps_and_keeps_what_finished(tmp_path):
    """A budget too small for the correctness step (it needs 10+ s even on an idle machine:
    two workers importing torch and Triton, then 38 interpreted cases): it is cut at the
    budget, the next step is skipped, the exit status says so, the whole run ends near the
    budget, and whatever cases finished before the cut are on disk, each a complete line."""
    t0 = time.monotonic()
    res = _run(tmp_path, "--only", "correctness,repro", budget=5, min_step=2)
    elapsed = time.monotonic() - t0
    status = _status(tmp_path)
    assert res.returncode == 1
    assert status == {"correctness": "TIMEOUT", "repro": "SKIP"}, res.stdout
    assert elapsed < 5 + 15
    done = [line for p in tmp_path.glob("correctness-*.jsonl")
            for line in p.read_text().splitlines()]
    assert all(json.loads(x)["ok"] for x in done)


def test_the_check_fails_a_wrong_result():
    """The comparison is not vacuous: a case passes at its tolerance and fails at zero."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    case = gpu_check.correctness_cases(dry=True)[0]
    assert gpu_check.run_correctness(case, "cpu", True, rtol_scale=1.0)["ok"]
    bad = gpu_check.run_correctness(case, "cpu", True, rtol_scale=0.0)
    assert not bad["ok"] and bad["max_rel_err"] > 0


def test_unknown_argument_is_a_usage_error(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--fast"],
                         capture_output=True, text=True, env=dict(os.environ, OUT=str(tmp_path)),
                         check=False)
    assert res.returncode == 2 and "unknown argument --fast" in res.stderr


def test_bundle_returns_one_archive(tmp_path):
    """On a GPU (or with --bundle) $OUT holds only the status lines and one archive, rewritten
    after every step: the device tool returns at most 8 files from $OUT."""
    import tarfile

    res = _run(tmp_path, "--bundle", "--only", "env,smoke")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.tgz", "status.txt"]
    with tarfile.open(tmp_path / "gpu_check.tgz") as tar:
        names = {n.lstrip("./") for n in tar.getnames()}
        status = tar.extractfile("./status.txt").read().decode()
    assert {"env.json", "env.log", "smoke.json", "smoke.log", "status.txt"} <= names
    assert status == (tmp_path / "status.txt").read_text()
    assert [line.split()[:2] for line in status.splitlines()] == [["env", "ok"], ["smoke", "ok"]]
