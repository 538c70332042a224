"""A run directory on disk: the files every run writes, written so a crash never leaves half.

Layout of ``RUN_DIR``::

    config.json      the resolved configuration (every option, the task name, world size)
    info.json        the task's JSON-able facts for rebuilding its model (sizes, vocabulary)
    metrics.jsonl    one JSON object per finished epoch
    metrics.json     the final metrics (task-specific keys, e.g. "loss", "prediction")
    checkpoint.pt    model + optimizer + RNG states + history (see :mod:`.checkpoint`)
    *.png            the loss curve and the task's own pictures

Every whole-file write goes to a temporary file in the same directory, is flushed to disk and
then renamed over the target with ``os.replace`` (atomic on POSIX and Windows). The file gets
the permissions a plain ``open(path, "w")`` would give it: ``0o666`` less the umask for a new
file, the old file's mode for a replaced one (``tempfile`` alone would leave it ``0o600``).

Reading a file that is not what recur wrote (not JSON, not a JSON object) raises ``ValueError``
with one line naming the file, never a traceback of the parser.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "atomic_write", "jsonable", "new_file_mode"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask: from ``/proc/self/status`` on Linux, else by setting and restoring
    it (under a lock; another thread creating a file in that instant gets ``0o077``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)
        os.umask(umask)
    return umask


def new_file_mode(path: str | os.PathLike | None = None) -> int:
    """The mode ``open(path, "w")`` gives: an existing file's own mode, else ``0o666`` less
    the process umask."""
    if path is not None:
        try:
            return stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            pass
    return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *,
                 binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, mode)  # mkstemp makes it 0o600 whatever the umask
        how = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8"}
        with os.fdopen(fd, **how) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def jsonable(value: Any) -> Any:
    """``value`` with tensors / numpy scalars turned into Python numbers, NaN/inf into strings
    (strict JSON has no NaN), tuples into lists and paths into strings."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class RunDir:
    """Reads and writes the files of one run directory (created on first write)."""

    CONFIG = "config.json"
    INFO = "info.json"
    METRICS_LOG = "metrics.jsonl"
    METRICS = "metrics.json"
    CHECKPOINT = "checkpoint.pt"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    def exists(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    def write_json(self, name: str, obj: Any) -> Path:
        text = json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n"
        atomic_write(self.path / name, lambda f: f.write(text))
        return self.path / name

    def read_json(self, name: str) -> dict[str, Any]:
        """The JSON object in file ``name``: ``FileNotFoundError`` when it is missing,
        ``ValueError`` (one line, naming the file) when it is not a JSON object."""
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {self.path} a recur run directory?")
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a readable recur run file: expected JSON, got an "
                             f"error at line {err.lineno} column {err.colno} "
                             f"({err.msg})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a readable recur run file: expected UTF-8 JSON, "
                             f"got bytes that are not UTF-8") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path} is not a readable recur run file: expected a JSON "
                             f"object, got {type(obj).__name__}")
        return obj

    def write_history(self, records: Iterable[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` with ``records`` (used when a run resumes)."""
        text = "".join(json.dumps(jsonable(r)) + "\n" for r in records)
        atomic_write(self.path / self.METRICS_LOG, lambda f: f.write(text))

    def append_history(self, record: dict[str, Any]) -> None:
        """Append one epoch's record to ``metrics.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / self.METRICS_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(record)) + "\n")
            f.flush()

    def read_history(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a malformed line raises with its number."""
        path = self.path / self.METRICS_LOG
        if not path.is_file():
            return []
        records = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {number}: not a readable recur metrics "
                                     f"log: expected one JSON object per line, got an error "
                                     f"at column {err.colno} ({err.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}, line {number}: not a readable recur metrics "
                                     f"log: expected a JSON object, got "
                                     f"{type(record).__name__}")
                records.append(record)
        return records
