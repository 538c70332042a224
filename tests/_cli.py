"""Running the ``recur`` command line inside a test."""

from __future__ import annotations

from recur.cli.main import main


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``recur ARGV`` (``capsys``: pytest's fixture)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
