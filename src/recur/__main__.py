"""``python -m recur ...`` (and ``torchrun -m recur train ...``): the ``recur`` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
