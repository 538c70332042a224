"""Constructor-argument checks shared by every recur module, with torch.nn's exception
classes and wording (the multi-layer modules, the cells and MinGRU / MinLSTM use them)."""

from __future__ import annotations

import numbers


def check_int(name: str, value, *, minimum: int | None = 1) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum`` (None: any): ``TypeError``
    for another type, ``ValueError`` for a smaller value (torch.nn's messages)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if minimum is not None and value < minimum:
        what = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool, else ``TypeError`` (torch.nn's message)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


def check_dropout(value, *, upper_open: bool = False) -> float:
    """A probability in ``[0, 1]`` (``[0, 1)`` with ``upper_open``) as a float, else
    ``ValueError`` naming the value."""
    hi = 1 if not upper_open else None
    ok = (isinstance(value, numbers.Number) and not isinstance(value, bool) and 0 <= value <= 1
          and (hi is not None or value < 1))
    if not ok:
        rng = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"dropout should be a number in range {rng} representing the "
                         f"probability of an element being zeroed, got {value!r}")
    return float(value)
