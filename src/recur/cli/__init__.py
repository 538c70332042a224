"""The ``recur`` command line (the only part of recur that prints). See :mod:`.main`."""

from .main import main

__all__ = ["main"]
