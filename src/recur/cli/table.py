"""How ``recur predict`` shows a result to a person: text laid out as tables, whatever the task
returns (``recur predict RUN --json`` prints the JSON itself, for machines).

:func:`format_result` takes any JSON-able value:

- a list of dicts (one row per input, e.g. several texts) → one table, a column per key
  (nested dicts become ``key.sub`` columns, lists are joined with ", ");
- a dict → ``key: value`` lines for its scalars (a nested dict on one line as
  ``a=1 b=2``), then, each under a blank line:
  lists of numbers of the same length side by side as the columns of one table
  (``t input target prediction``), a list of dicts as a table, a matrix as aligned rows,
  a list of matrices (frames) as matrices side by side; a list alone on one line;
- anything else → its value, or indented JSON.

Floats show 4 significant digits (``format_value``); table cells longer than
:data:`MAX_CELL` characters are cut with ``...``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ..train.progress import format_value

__all__ = ["format_result", "format_table", "MAX_CELL"]

MAX_CELL = 60
#: widest line of matrices set side by side before they are stacked instead
MAX_WIDTH = 120


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_scalar(v) for v in value)


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(
        isinstance(row, list) and row and all(_is_number(v) for v in row) for row in value)
        and len({len(row) for row in value}) == 1)


def _text(value: Any) -> str:
    """One value on one line: floats short, lists joined, dicts as ``k=v``."""
    if isinstance(value, str):
        return value
    if _is_scalar(value):
        return format_value(value)
    if _is_scalar_list(value):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict) and all(_is_scalar(v) for v in value.values()):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items())
    return json.dumps(value)


def _cut(text: str) -> str:
    text = " ".join(text.split())  # a table cell is one line
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of a table with a column per key (first-seen order), a header and a rule;
    numbers right-aligned, text left-aligned, a missing key an empty cell."""
    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    cells = [[_cut(_text(r[c])) if c in r else "" for c in columns] for r in flat]
    right = [all(_is_number(r.get(c)) for r in flat if c in r) for c in columns]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)]


def _matrix_lines(matrix: list[list[float]]) -> list[str]:
    cells = [[format_value(float(v)) for v in row] for row in matrix]
    width = max(len(c) for row in cells for c in row)
    return [" ".join(c.rjust(width) for c in row) for row in cells]


def _frames_lines(frames: list[list[list[float]]]) -> list[str]:
    blocks = [_matrix_lines(m) for m in frames]
    labels = [f"[{i}]" for i in range(len(blocks))]
    widths = [max(len(b[0]), len(label)) for b, label in zip(blocks, labels, strict=True)]
    if sum(widths) + 3 * (len(widths) - 1) <= MAX_WIDTH and \
            len({len(b) for b in blocks}) == 1:
        rows = [label.ljust(w) for label, w in zip(labels, widths, strict=True)]
        lines = ["   ".join(rows).rstrip()]
        for i in range(len(blocks[0])):
            cells = (b[i].ljust(w) for b, w in zip(blocks, widths, strict=True))
            lines.append("   ".join(cells).rstrip())
        return lines
    lines = []
    for label, block in zip(labels, blocks, strict=True):
        lines += [label, *block]
    return lines


def _format_dict(result: dict[str, Any]) -> list[str]:
    lengths = Counter(len(v) for v in result.values() if _is_scalar_list(v) and v)
    scalars: list[tuple[str, str]] = []
    blocks: list[list[str] | int] = []         # lines, or the length of a column group
    columns: dict[int, dict[str, list]] = {}   # length -> {key: values}, one table each
    for key, value in result.items():
        if _is_scalar(value) or (isinstance(value, dict)
                                 and all(_is_scalar(v) for v in value.values())):
            scalars.append((key, _text(value)))
        elif _is_scalar_list(value) and value and lengths[len(value)] > 1:
            if len(value) not in columns:
                columns[len(value)] = {}
                blocks.append(len(value))   # the table goes where its first column was
            columns[len(value)][key] = value
        elif _is_scalar_list(value):
            scalars.append((key, _text(value)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            blocks.append([f"{key}:", *format_table(value)])
        elif _is_matrix(value):
            blocks.append([f"{key}:", *_matrix_lines(value)])
        elif isinstance(value, list) and value and all(_is_matrix(v) for v in value):
            blocks.append([f"{key}: {len(value)} x {len(value[0])} x {len(value[0][0])}",
                           *_frames_lines(value)])
        else:
            blocks.append([f"{key}:", *json.dumps(value, indent=2).splitlines()])
    lines = []
    if scalars:
        width = max(len(k) for k, _ in scalars) + 1
        lines += [f"{k + ':':<{width}} {v}".rstrip() for k, v in scalars]
    for block in blocks:
        if isinstance(block, int):
            group = columns[block]
            block = format_table([{k: v[i] for k, v in group.items()} for i in range(block)])
        if lines:
            lines.append("")
        lines += block
    return lines


def format_result(result: Any) -> str:
    """``result`` (JSON-able) as text for a terminal; see the module docstring for the
    layout."""
    if isinstance(result, dict):
        return "\n".join(_format_dict(result)) if result else "(empty result)"
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        return "\n".join(format_table(result))
    if _is_scalar_list(result):
        return "\n".join(_text(v) for v in result) if result else "(empty result)"
    if _is_scalar(result):
        return _text(result)
    return json.dumps(result, indent=2)
