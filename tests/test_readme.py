"""The README's command-line block, run as a user types it after the quick start.

Each line of the ```` ```bash ```` block under "## The command line" runs in its own
``bash -c``, in a fresh directory that holds ``.venv`` (a link to the virtual environment
running these tests) and nothing else, with a ``PATH`` that does not hold the environment's
``bin``: so the block's first line, ``source .venv/bin/activate``, is what puts ``recur`` on
``PATH``, as it is for a user. The umask is 022, and every file the commands write must come
out ``-rw-r--r--``.

Three commands run with fewer steps appended (same command, same flags, a smaller run) to keep
CI short (``FEWER_STEPS``); none is skipped (``SKIPPED`` says why, should one ever be).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
VENV = Path(sys.prefix)
ACTIVATE = "source .venv/bin/activate"

#: README command (before its comment) -> flags appended to make it quick
FEWER_STEPS = {
    "recur train sine-cos --out runs/sc": ["--epochs", "2"],          # 10 epochs: ~10 s
    "recur diagnose gradients": ["--seq-len", "20", "--train-steps", "5"],   # ~15 s
    "torchrun --standalone --nproc_per_node 2 -m recur train lagged-sine":
        ["--epochs", "1"],                                # 15 epochs by default
}
#: README command prefix -> why it is not run here (none at present)
SKIPPED: dict[str, str] = {}


def readme_commands() -> list[str]:
    """The lines of the first ```bash block after "## The command line"."""
    section = README.read_text(encoding="utf-8").split("\n## The command line\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"umask 022\n{script}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_readme_block_parses():
    commands = readme_commands()
    assert commands[0].split("#")[0].strip() == ACTIVATE
    argv = [shlex.split(c, comments=True) for c in commands[1:]]
    assert all(a[0] in ("recur", "torchrun") for a in argv)
    names = {shlex.join(a) for a in argv}
    assert set(FEWER_STEPS) <= names  # a README edit must not silently drop an override
    assert all(any(n.startswith(prefix) for n in names) for prefix in SKIPPED)


@pytest.mark.slow
@pytest.mark.skipif(not (VENV / "bin" / "activate").is_file(),
                    reason="the tests do not run in a virtual environment, so there is no "
                           ".venv/bin/activate for the README's first line to source")
def test_readme_commands_run_as_typed(tmp_path):
    (tmp_path / ".venv").symlink_to(VENV, target_is_directory=True)
    bin_dir = str(VENV / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != Path(bin_dir).resolve())
    env = {**os.environ, "PATH": path or "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)

    commands = readme_commands()
    activate = commands[0].split("#")[0].strip()
    proc = _bash(f"{activate} && command -v recur torchrun", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    found = [Path(p).resolve() for p in proc.stdout.split()]
    assert found == [(VENV / "bin" / name).resolve() for name in ("recur", "torchrun")]

    outputs = {}
    for line in commands[1:]:
        argv = shlex.split(line, comments=True)
        name = shlex.join(argv)
        if any(name.startswith(prefix) for prefix in SKIPPED):
            continue
        proc = _bash(f"{activate} && {shlex.join(argv + FEWER_STEPS.get(name, []))}",
                     tmp_path, env)
        assert proc.returncode == 0, f"{name}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        outputs[name] = proc.stdout

    assert outputs["recur tasks"].split()[0] == "hello"
    assert outputs["recur train hello"].splitlines()[-1].startswith("hello: prediction=ohlol")
    assert "runs/sc" in outputs["recur train sine-cos --out runs/sc"].splitlines()[-1]
    assert outputs["recur eval runs/sc"].splitlines()[-1].startswith("sine-cos: loss=")
    table = outputs["recur predict runs/sc --windows 3"].splitlines()
    assert table[0].startswith("mse:") and table[2].split() == ["t", "input", "target",
                                                                "prediction"]
    assert outputs["recur predict runs/sc --windows 3 --json"].startswith('{"t": [')
    assert (tmp_path / "model.onnx").is_file()
    assert "diagnose gradients: T=20" in outputs["recur diagnose gradients"]
    assert "onnxruntime:" in outputs["recur env"]
    ddp = [o for n, o in outputs.items() if n.startswith("torchrun")]
    assert len(ddp) == 1 and "1 epochs x 2 processes" in ddp[0].splitlines()[-1]

    tops = [p for p in tmp_path.iterdir() if p.name != ".venv"]
    written = [f for p in tops for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    assert len(written) > 10
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {"0o644"}, modes
