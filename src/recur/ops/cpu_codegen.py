"""C kernels for the ``cpu`` backend, generated from a cell's single declaration.

The cell's ``update(xg, hg, states, *cell_weights)`` is traced once per (cell, sizes, dtype) with
``make_fx`` into two aten graphs: the update itself, and its vector-Jacobian product
(``torch.func.vjp``: the forward recomputed, then the backward). Each graph is translated
node by node into one C function over one batch row (every op of a cell's update is
elementwise per row, a reduction over the row (layer norm) or, in the vjp, a sum over the
batch, which becomes a per-row accumulation into a cell weight's gradient). A fixed C
template wraps them into one step of the sequence (lengths, zoneout, recurrent-dropout mask)
forward and backward; :mod:`recur.ops.cpu` calls it once per step between PyTorch's GEMMs.

Nothing here knows a cell's math: an aten op outside :data:`SUPPORTED` makes
:func:`kernel_for` raise :class:`Unsupported` with the op's name, and the cell runs on the
reference loop instead. The C source is compiled with the system's C compiler (``$CC``, else
``cc`` / ``gcc`` / ``clang``) into a shared library cached under ``$RECUR_CACHE_DIR`` (default
``~/.cache/recur/cpu_kernels``), keyed by the source's hash; a cached kernel loads in
milliseconds, a new one compiles in well under a second. For recur's own cells the
generated source is kept there too (:func:`generated`), so a new process skips the trace.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ..cells import Cell

aten = torch.ops.aten


class Unsupported(Exception):
    """The cell's update uses something the generator cannot translate (message says what)."""


# ---------------------------------------------------------------------------------- values
@dataclass
class Val:
    """One graph value within one batch row: ``kind`` is ``"row"`` (``[B, n]``: ``n`` per
    row), ``"par"`` (a cell weight, the same for every row), ``"bsum"`` (this row's share of a
    sum over the batch: a cell weight's gradient), or ``"const"`` (``expr`` is a literal)."""

    kind: str
    width: int
    expr: str  # C pointer name (or literal for const)

    def at(self, j: str = "j") -> str:
        if self.kind == "const":
            return self.expr
        return f"{self.expr}[0]" if self.width == 1 else f"{self.expr}[{j}]"


_UNARY = {
    aten.sigmoid.default: "(ONE / (ONE + EXP(-{a})))",
    aten.tanh.default: "TANH({a})",
    aten.neg.default: "(-{a})",
    aten.exp.default: "EXP({a})",
    aten.log.default: "LOG({a})",
    aten.sqrt.default: "SQRT({a})",
    aten.rsqrt.default: "(ONE / SQRT({a}))",
    aten.relu.default: "({a} > 0 ? {a} : (T)0)",
    aten.abs.default: "FABS({a})",
    aten.reciprocal.default: "(ONE / {a})",
    aten.clone.default: "{a}",
    aten.alias.default: "{a}",
    aten.detach.default: "{a}",
    aten.sin.default: "SIN({a})",
    aten.cos.default: "COS({a})",
    aten.log1p.default: "LOG1P({a})",
    aten.expm1.default: "EXPM1({a})",
}
_BINARY = {
    aten.add.Tensor: "({a} + {b})",
    aten.sub.Tensor: "({a} - {b})",
    aten.mul.Tensor: "({a} * {b})",
    aten.div.Tensor: "({a} / {b})",
    aten.add.Scalar: "({a} + {b})",
    aten.sub.Scalar: "({a} - {b})",
    aten.mul.Scalar: "({a} * {b})",
    aten.div.Scalar: "({a} / {b})",
    aten.rsub.Scalar: "({b} - {a})",
    aten.rsub.Tensor: "({b} - {a})",
    aten.sigmoid_backward.default: "({a} * {b} * (ONE - {b}))",
    aten.tanh_backward.default: "({a} * (ONE - {b} * {b}))",
    aten.maximum.default: "({a} > {b} ? {a} : {b})",
    aten.minimum.default: "({a} < {b} ? {a} : {b})",
    aten.pow.Tensor_Scalar: "POW({a}, {b})",
    aten.threshold_backward.default: None,  # (grad, self, threshold): handled below
    aten.gt.Scalar: "(T)({a} > {b})",
    aten.lt.Scalar: "(T)({a} < {b})",
    aten.ge.Scalar: "(T)({a} >= {b})",
    aten.le.Scalar: "(T)({a} <= {b})",
}
_LINEAR = (aten.add.Tensor, aten.sub.Tensor, aten.neg.default)  # allowed on bsum values
_LINEAR_FIRST = (aten.mul.Tensor, aten.div.Tensor, aten.sigmoid_backward.default,
                 aten.tanh_backward.default, aten.threshold_backward.default,
                 aten.mul.Scalar, aten.div.Scalar)  # linear in their first argument
_VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default,
          aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default,
          aten.expand.default, aten.clone.default, aten.alias.default, aten.detach.default)

#: the aten ops the generator translates (an update made of these gets the fast path)
SUPPORTED = frozenset(
    set(_UNARY) | set(_BINARY) | set(_VIEWS) | {
        aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default,
        aten.unbind.int, aten.select.int, aten.slice.Tensor, aten.cat.default,
        aten.stack.default, aten.sum.dim_IntList, aten.mean.dim,
        aten.native_layer_norm.default, aten.native_layer_norm_backward.default,
        aten.select_backward.default, aten.slice_backward.default,
        aten.zeros_like.default, aten.ones_like.default, aten.full_like.default,
        aten.where.self, aten.addcmul.default, aten.lerp.Scalar, aten.clamp.default,
    })


def _num(x) -> str:
    if isinstance(x, bool):
        return "ONE" if x else "((T)0)"
    return f"((T){float(x)!r})"


class _Emitter:
    """Translates one traced graph into the body of a C function over one row."""

    def __init__(self, batch: int):
        self.B = batch
        self.lines: list[str] = []
        self.n = 0

    def new(self, kind: str, width: int) -> Val:
        self.n += 1
        name = f"v{self.n}"
        self.lines.append(f"T {name}[{width}];")
        return Val(kind, width, name)

    def alias(self, base: Val, offset: int, width: int, kind: str | None = None) -> Val:
        if base.kind == "const":
            return Val("const", width, base.expr)
        self.n += 1
        name = f"v{self.n}"
        self.lines.append(f"T *{name} = {base.expr} + {offset};")
        return Val(kind or base.kind, width, name)

    def loop(self, out: Val, expr: str) -> None:
        self.lines.append(f"for (int j = 0; j < {out.width}; j++) {out.expr}[j] = {expr};")

    # --- helpers
    def value(self, env, a) -> Val:
        if isinstance(a, torch.fx.Node):
            return env[a]
        if isinstance(a, (int, float, bool)):
            return Val("const", 1, _num(a))
        raise Unsupported(f"argument {a!r} of type {type(a).__name__}")

    def kind_of(self, vals: list[Val], op) -> str:
        kinds = {v.kind for v in vals} - {"const"}
        if "bsum" in kinds:
            # a sum over the batch may only pass through ops linear in it (so that summing
            # each row's share afterwards gives the same): +, -, and scaling by par / const
            n_bsum = sum(v.kind == "bsum" for v in vals)
            first_only = op in _LINEAR_FIRST and vals[0].kind == "bsum" and n_bsum == 1
            either = op is aten.mul.Tensor and n_bsum == 1
            all_bsum = all(v.kind == "bsum" for v in vals)
            if not (op in _LINEAR and all_bsum) and not first_only and not either:
                raise Unsupported(f"{op} on a sum over the batch")
            if "row" in kinds:
                raise Unsupported(f"{op} mixing a batch sum with a row value")
            return "bsum"
        if "row" in kinds:
            return "row"
        return "par" if kinds else "const"

    def elementwise(self, op, vals: list[Val], template: str, node) -> Val:
        width = max(v.width for v in vals)
        for v in vals:
            if v.width not in (1, width):
                raise Unsupported(f"{op}: widths {[u.width for u in vals]} do not broadcast "
                                  "row by row")
        kind = self.kind_of(vals, op)
        if kind == "const":
            kind = "row"
        shape = tuple(node.meta["val"].shape)
        if kind == "row" and (len(shape) != 2 or shape[0] != self.B):
            raise Unsupported(f"{op} gives shape {shape}, not [B, n]")
        if kind == "par" and vals and all(v.kind in ("par", "const") for v in vals):
            # a cell-weight-only expression: computed per row as well (cheap, rare)
            pass
        out = self.new(kind, width)
        names = "abc"
        self.loop(out, template.format(**{names[i]: v.at() for i, v in enumerate(vals)}))
        return out


def _width_of(node) -> tuple[tuple[int, ...], int]:
    shape = tuple(node.meta["val"].shape)
    n = 1
    for s in shape:
        n *= s
    return shape, n


def emit_graph(gm: torch.fx.GraphModule, in_kinds: list[str], batch: int
               ) -> tuple[list[str], list[Val | None]]:
    """C statements computing ``gm``'s outputs within one row; ``in_kinds``: ``"row"`` or
    ``"par"`` per placeholder, named ``in0, in1, ...`` in C. Returns (lines, outputs)."""
    E = _Emitter(batch)
    env: dict = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for k, (node, kind) in enumerate(zip(placeholders, in_kinds)):
        _, numel = _width_of(node)
        env[node] = Val(kind, numel // batch if kind == "row" else numel, f"in{k}")
    outputs: list = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outputs = [env[a] if isinstance(a, torch.fx.Node) else None
                       for a in torch.utils._pytree.tree_leaves(node.args[0])]
            break
        if node.op != "call_function":
            raise Unsupported(f"graph node {node.op}")
        env[node] = _emit_node(E, env, node)
    return E.lines, outputs


def _emit_node(E: _Emitter, env, node):
    op, args = node.target, node.args
    import operator

    if op is operator.getitem:
        return env[args[0]][args[1]]
    if op not in SUPPORTED:
        raise Unsupported(f"the update uses {op}, which the C generator does not translate")
    val = node.meta.get("val")
    if op in _UNARY:
        return E.elementwise(op, [E.value(env, args[0])], _UNARY[op], node) if op not in (
            aten.clone.default, aten.alias.default, aten.detach.default) else env[args[0]]
    if op is aten.threshold_backward.default:
        g, x, thr = (E.value(env, a) for a in args)
        return E.elementwise(op, [g, x, thr], "({b} <= {c} ? (T)0 : {a})", node)
    if op in _BINARY:
        a, b = E.value(env, args[0]), E.value(env, args[1])
        tpl = _BINARY[op]
        alpha = node.kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if alpha != 1:
            if op not in (aten.add.Tensor, aten.sub.Tensor, aten.rsub.Scalar):
                raise Unsupported(f"{op} with alpha")
            b = E.elementwise(aten.mul.Tensor, [b, Val("const", 1, _num(alpha))],
                              "({a} * {b})", node.args[1] if isinstance(
                                  node.args[1], torch.fx.Node) else node)
        return E.elementwise(op, [a, b], tpl, node)
    if op is aten.where.self:
        c, a, b = (E.value(env, x) for x in args)
        return E.elementwise(op, [c, a, b], "({a} != 0 ? {b} : {c})", node)
    if op is aten.addcmul.default:
        s, t1, t2 = (E.value(env, x) for x in args[:3])
        v = node.kwargs.get("value", 1)
        return E.elementwise(op, [s, t1, t2], "({a} + " + _num(v) + " * {b} * {c})", node)
    if op is aten.lerp.Scalar:
        s, e = E.value(env, args[0]), E.value(env, args[1])
        return E.elementwise(op, [s, e], "({a} + " + _num(args[2]) + " * ({b} - {a}))", node)
    if op is aten.clamp.default:
        x = E.value(env, args[0])
        lo = args[1] if len(args) > 1 else node.kwargs.get("min")
        hi = args[2] if len(args) > 2 else node.kwargs.get("max")
        expr = "{a}"
        if lo is not None:
            expr = f"({expr} < {_num(lo)} ? {_num(lo)} : {expr})"
        if hi is not None:
            expr = f"({expr} > {_num(hi)} ? {_num(hi)} : {expr})"
        return E.elementwise(op, [x], expr, node)
    if op in (aten.zeros_like.default, aten.ones_like.default, aten.full_like.default):
        fill = {aten.zeros_like.default: 0, aten.ones_like.default: 1}.get(op)
        fill = args[1] if fill is None else fill
        return Val("const", 1, _num(fill))
    if op in _VIEWS:
        src = env[args[0]]
        shape, numel = _width_of(node)
        if src.kind == "row":
            if len(shape) != 2 or shape[0] != E.B or shape[1] != src.width:
                raise Unsupported(f"{op} reshapes a row value to {shape}")
            return src
        if src.kind == "const":
            return src
        if numel != src.width:
            raise Unsupported(f"{op} broadcasts a cell weight to {shape}")
        return src
    if op in (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default,
              aten.unbind.int):
        src = env[args[0]]
        if op is aten.unbind.int:
            dim = args[1] if len(args) > 1 else 0
        else:
            dim = args[2] if len(args) > 2 else 0
        in_shape = tuple(args[0].meta["val"].shape)
        dim = dim % len(in_shape)
        parts = val
        out, off = [], 0
        for p in parts:
            pshape = tuple(p.shape)
            numel = 1
            for s in pshape:
                numel *= s
            if src.kind == "row":
                if dim != len(in_shape) - 1 or len(in_shape) != 2:
                    raise Unsupported(f"{op} of a row value along dim {dim}")
                w = pshape[-1]
            else:
                if dim != 0:
                    raise Unsupported(f"{op} of a cell weight along dim {dim}")
                w = numel
            out.append(E.alias(src, off, w))
            off += w
        return out
    if op is aten.select.int:
        src, dim, idx = env[args[0]], args[1], args[2]
        in_shape = tuple(args[0].meta["val"].shape)
        if src.kind != "par" or dim % len(in_shape) != 0:
            raise Unsupported(f"{op} on a {src.kind} value along dim {dim}")
        w = src.width // in_shape[0]
        return E.alias(src, (idx % in_shape[0]) * w, w)
    if op is aten.slice.Tensor:
        src = env[args[0]]
        in_shape = tuple(args[0].meta["val"].shape)
        dim = (args[1] if len(args) > 1 else 0) % len(in_shape)
        start = args[2] if len(args) > 2 else 0
        end = args[3] if len(args) > 3 else in_shape[dim]
        step = args[4] if len(args) > 4 else 1
        start = 0 if start is None else (start % in_shape[dim] if start < 0 else start)
        end = min(in_shape[dim], end if end is not None else in_shape[dim])
        end = end % in_shape[dim] if end < 0 else end
        if step != 1:
            raise Unsupported(f"{op} with step {step}")
        if src.kind == "row" and dim == 1 and len(in_shape) == 2:
            return E.alias(src, start, end - start)
        if src.kind == "par" and dim == 0:
            w = src.width // in_shape[0]
            return E.alias(src, start * w, (end - start) * w)
        raise Unsupported(f"{op} of a {src.kind} value along dim {dim}")
    if op in (aten.cat.default, aten.stack.default):
        parts = [E.value(env, a) for a in args[0]]
        dim = args[1] if len(args) > 1 else 0
        shape, numel = _width_of(node)
        kinds = {p.kind for p in parts} - {"const"}
        if kinds == {"row"} or (kinds <= {"row"} and op is aten.cat.default):
            if op is aten.stack.default or dim % 2 != 1:
                raise Unsupported(f"{op} of row values along dim {dim}")
            widths = [tuple(a.meta["val"].shape)[-1] for a in args[0]]
            kind = "row"
        elif kinds <= {"par", "bsum"} and len(kinds) == 1 and dim == 0:
            widths = [p.width for p in parts]
            kind = kinds.pop()
        else:
            raise Unsupported(f"{op} of {sorted(kinds)} values along dim {dim}")
        out = E.new(kind, sum(widths))
        off = 0
        for p, w in zip(parts, widths):
            E.lines.append(f"for (int j = 0; j < {w}; j++) {out.expr}[{off} + j] = {p.at()};")
            off += w
        return out
    if op in (aten.sum.dim_IntList, aten.mean.dim):
        src = env[args[0]]
        in_shape = tuple(args[0].meta["val"].shape)
        dims = sorted({d % len(in_shape) for d in (args[1] or range(len(in_shape)))})
        if src.kind == "row" and dims == [0]:
            if op is aten.mean.dim:
                raise Unsupported("a mean over the batch")
            return Val("bsum", src.width, src.expr)  # this row's share of the batch sum
        if src.kind == "row" and dims == [1] and len(in_shape) == 2:
            out = E.new("row", 1)
            scale = f" / (T){src.width}" if op is aten.mean.dim else ""
            E.lines.append(f"{{ T s = 0; for (int j = 0; j < {src.width}; j++) s += "
                           f"{src.expr}[j]; {out.expr}[0] = s{scale}; }}")
            return out
        raise Unsupported(f"{op} of a {src.kind} value over dims {dims}")
    if op in (aten.select_backward.default, aten.slice_backward.default):
        g = env[args[0]]
        sizes = list(args[1])
        dim = args[2] % len(sizes)
        if dim != 0 or g.kind not in ("bsum", "par"):
            raise Unsupported(f"{op} of a {g.kind} value along dim {dim}")
        inner = 1
        for s in sizes[1:]:
            inner *= s
        if op is aten.select_backward.default:
            start = (args[3] % sizes[0]) * inner
        else:
            start = (args[3] or 0) * inner
            if (args[5] if len(args) > 5 else 1) != 1:
                raise Unsupported(f"{op} with a step")
        out = E.new(g.kind, sizes[0] * inner)
        E.lines.append(f"for (int j = 0; j < {out.width}; j++) {out.expr}[j] = 0;")
        E.lines.append(f"for (int j = 0; j < {g.width}; j++) {out.expr}[{start} + j] = "
                       f"{g.at()};")
        return out
    if op is aten.native_layer_norm.default:
        x, w, b = env[args[0]], env.get(args[2]), env.get(args[3])
        eps = args[4]
        if x.kind != "row" or list(args[1]) != [x.width]:
            raise Unsupported(f"layer norm over {list(args[1])} of a {x.kind} value")
        out, mean, rstd = E.new("row", x.width), E.new("row", 1), E.new("row", 1)
        n = x.width
        ww = f" * {w.at()}" if w is not None else ""
        bb = f" + {b.at()}" if b is not None else ""
        E.lines.append(
            f"{{ T s = 0; for (int j = 0; j < {n}; j++) s += {x.expr}[j]; T mu = s / (T){n};"
            f" T q = 0; for (int j = 0; j < {n}; j++) {{ T d = {x.expr}[j] - mu; q += d * d; }}"
            f" T r = ONE / SQRT(q / (T){n} + {_num(eps)}); {mean.expr}[0] = mu; "
            f"{rstd.expr}[0] = r;"
            f" for (int j = 0; j < {n}; j++) {out.expr}[j] = ({x.expr}[j] - mu) * r{ww}{bb}; }}")
        return [out, mean, rstd]
    if op is aten.native_layer_norm_backward.default:
        g, x, _, mean, rstd, w, b, mask = args
        g, x, mean, rstd = env[g], env[x], env[mean], env[rstd]
        w = env.get(w)
        n = x.width
        dx = E.new("row", n) if mask[0] else None
        dw = E.new("bsum", n) if mask[1] and w is not None else None
        db, aliased = None, g.kind == "row" and g.width == n
        if mask[2] and b is not None:  # the bias's gradient is g itself: no copy of a row
            db = E.alias(g, 0, n, "bsum") if aliased else E.new("bsum", n)
        gw = f"{g.at()} * {w.at()}" if w is not None else g.at()
        xh = f"(({x.expr}[j] - {mean.expr}[0]) * {rstd.expr}[0])"
        body = [(f"{{ T s1 = 0, s2 = 0; for (int j = 0; j < {n}; j++) {{ T a = {gw}; "
                 f"s1 += a; s2 += a * {xh}; }}")]
        if dx is not None:
            body.append(f" for (int j = 0; j < {n}; j++) {dx.expr}[j] = {rstd.expr}[0] / "
                        f"(T){n} * ((T){n} * ({gw}) - s1 - {xh} * s2);")
        if dw is not None:
            body.append(f" for (int j = 0; j < {n}; j++) {dw.expr}[j] = {g.at()} * {xh};")
        if db is not None and not aliased:
            body.append(f" for (int j = 0; j < {n}; j++) {db.expr}[j] = {g.at()};")
        E.lines.append("".join(body) + " }")
        return [dx, dw, db]
    raise Unsupported(f"the update uses {op}, which the C generator does not translate")


# ------------------------------------------------------------------------ step template
_CTYPES = {torch.float32: ("float", "f"), torch.float64: ("double", "")}


def _prelude(dtype: torch.dtype) -> str:
    ctype, s = _CTYPES[dtype]
    fns = ("EXP exp", "TANH tanh", "LOG log", "SQRT sqrt", "FABS fabs", "SIN sin", "COS cos",
           "LOG1P log1p", "EXPM1 expm1", "POW pow")
    defs = "\n".join(f"#define {f.split()[0]} {f.split()[1]}{s}" for f in fns)
    return (f"#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
            f"typedef {ctype} T;\n#define ONE ((T)1)\n{defs}\n")


def _row_function(name: str, lines: list[str], outs: list[Val | None], n_in: int,
                  dests: list[tuple[str, int, bool]]) -> str:
    """``static void name(T *in0.., T *out0..)``; ``dests``: (C name, width, accumulate)."""
    args = [f"T *restrict in{k}" for k in range(n_in)]
    args += [f"T *restrict {d}" for d, _, _ in dests]
    body = list(lines)
    for v, (d, w, acc) in zip(outs, dests):
        if v is None or (v.kind == "const" and acc):
            if not acc:
                body.append(f"for (int j = 0; j < {w}; j++) {d}[j] = 0;")
            continue
        if v.kind == "par" and acc:
            raise Unsupported("a cell weight gradient that does not depend on the batch")
        if v.kind != "const" and v.width not in (1, w):
            raise Unsupported(f"an output of width {v.width}, expected {w}")
        op = "+=" if acc else "="
        body.append(f"for (int j = 0; j < {w}; j++) {d}[j] {op} {v.at()};")
    return (f"static inline void {name}({', '.join(args)}) {{\n  "
            + "\n  ".join(body) + "\n}\n")


def _step_functions(NS: int, NP: int, GX: int, GH: int, W: list[int],
                    shared: bool = False) -> tuple[str, dict]:
    """The fixed wrapper: one sequence step over all rows, forward and backward.
    ``shared``: the update's vjp gives ``xg`` and ``hg`` the same cotangent, which
    ``cell_bwd`` then writes to DXG alone (copied to DHG where that is another buffer; the
    library's ``dhg_is_dxg`` says so, and the caller may pass one buffer for both).

    Pointer table ``P``: XG, HG, S_0..S_{NS-1} (``[T+1, B, W_k]``), HIN (``[T+1, B, W_0]``
    or NULL), OUT (``[T, B, W_0]`` or NULL), PR_p (the cell weights), zoneout masks
    (``[T, B, W_k]`` with unit stride along ``W_k``, or NULL), HM (``[B, W_0]`` or NULL), LEN
    (int64 ``[B]`` or NULL), BHH (``[G*H]``, added to each row of HG before the update,
    which HG then keeps, or NULL), BIH (``[GX]``, added to a copy of each row of XG that the
    update reads, forward and backward: XG stays as given; or NULL), then for the backward:
    DXG, DHG, G_k (``[B, W_k]``, running cotangents), GOUT (or NULL), DH (``[B, W_0]``), DP_p
    (the cell weights' gradients), then the zoneout masks' step and row strides as integers
    (ZST_k, ZSB_k; 0 where a mask is the same for every step or row), then whether its
    units have a value each (ZSJ_k = 1: unit stride along ``W_k``) or share one number (0:
    eval mode's rates, read from that number, no ``[W_k]`` copy of them)."""
    idx = {}
    names = (["XG", "HG"] + [f"S{k}" for k in range(NS)] + ["HIN", "OUT"]
             + [f"PR{p}" for p in range(NP)] + [f"Z{k}" for k in range(NS)]
             + ["HM", "LEN", "BHH", "BIH"]
             + ["DXG", "DHG"] + [f"G{k}" for k in range(NS)] + ["GOUT", "DH"]
             + [f"DP{p}" for p in range(NP)]
             + [f"ZST{k}" for k in range(NS)] + [f"ZSB{k}" for k in range(NS)]
             + [f"ZSJ{k}" for k in range(NS)])
    for i, n in enumerate(names):
        idx[n] = i
    def c_decl(n: str, i: int) -> str:
        if n.startswith(("ZST", "ZSB", "ZSJ")):  # a zoneout mask's strides (0: broadcast)
            return f"int64_t {n.lower()} = (int64_t)(intptr_t)P[{i}];"
        ty = "int64_t" if n == "LEN" else "T"
        return f"{ty} *{n} = ({ty} *)P[{i}];"
    decl = "\n  ".join(c_decl(n, i) for n, i in idx.items())

    def zone(k: int, body: str, otherwise: str = "") -> str:
        """C applying state ``k``'s zoneout mask where it is given: ``body`` per unit ``j``,
        ``{m}`` standing for the mask's value there (its own, or the one shared number)."""
        loop = f"for (int j = 0; j < {W[k]}; j++) "
        code = (f"if (Z{k}) {{ T *m = Z{k} + t * zst{k} + b * zsb{k}; "
                f"if (zsj{k}) {loop}{body.format(m='m[j]')}; "
                f"else {{ const T r = m[0]; {loop}{body.format(m='r')}; }} }}")
        return code + (f" else {otherwise}" if otherwise else "")

    rowp = "\n    ".join(
        [f"T *xg = XG + (t * B + b) * {GX}; T *hg = HG + (th * B + b) * {GH};"]
        + [f"T *sp{k} = S{k} + (prev * B + b) * {W[k]}; T *sn{k} = S{k} + (next * B + b) * "
           f"{W[k]};" for k in range(NS)])
    bih = (f"T xb_[{GX}]; if (BIH) {{ for (int j = 0; j < {GX}; j++) xb_[j] = xg[j] + BIH[j]; "
           f"xg = xb_; }}")
    prs = "".join(f", PR{p}" for p in range(NP))
    sps = "".join(f", sp{k}" for k in range(NS))
    fwd = f"""
void step_fwd(void **P, int64_t B, int64_t t, int64_t th, int64_t prev, int64_t next) {{
  {decl}
  for (int64_t b = 0; b < B; b++) {{
    {rowp}
    if (LEN && t >= LEN[b]) {{
      {" ".join(f"memcpy(sn{k}, sp{k}, sizeof(T) * {W[k]});" for k in range(NS))}
      if (HIN) memcpy(HIN + (next * B + b) * {W[0]}, HIN + (prev * B + b) * {W[0]}, sizeof(T) * {W[0]});
      if (OUT) memset(OUT + (t * B + b) * {W[0]}, 0, sizeof(T) * {W[0]});
      continue;
    }}
    if (BHH) for (int j = 0; j < {GH}; j++) hg[j] += BHH[j];
    {bih}
    cell_fwd(xg, hg{sps}{prs}{"".join(f", sn{k}" for k in range(NS))});
    {" ".join(zone(k, f"sn{k}[j] = {{m}} * sp{k}[j] + (ONE - {{m}}) * sn{k}[j]") for k in range(NS))}
    if (HIN) {{ T *hn = HIN + (next * B + b) * {W[0]}; T *hm = HM + b * {W[0]};
      for (int j = 0; j < {W[0]}; j++) hn[j] = sn0[j] * hm[j]; }}
    if (OUT) memcpy(OUT + (t * B + b) * {W[0]}, sn0, sizeof(T) * {W[0]});
  }}
}}
"""
    gs = "\n    ".join(f"T *g{k} = G{k} + b * {W[k]};" for k in range(NS))
    bwd = f"""
void step_bwd(void **P, int64_t B, int64_t t, int64_t th, int64_t prev, int64_t next,
              int64_t first) {{
  {decl}
  for (int64_t b = 0; b < B; b++) {{
    {rowp}
    {gs}
    if (!first) {{ T *dh = DH + b * {W[0]};
      if (HM) {{ T *hm = HM + b * {W[0]}; for (int j = 0; j < {W[0]}; j++) g0[j] += dh[j] * hm[j]; }}
      else for (int j = 0; j < {W[0]}; j++) g0[j] += dh[j]; }}
    T *dxg = DXG + (t * B + b) * {GX}; T *dhg = DHG + (t * B + b) * {GH};
    if (LEN && t >= LEN[b]) {{
      memset(dxg, 0, sizeof(T) * {GX}); memset(dhg, 0, sizeof(T) * {GH}); continue; }}
    if (GOUT) {{ T *go = GOUT + (t * B + b) * {W[0]}; for (int j = 0; j < {W[0]}; j++) g0[j] += go[j]; }}
    {" ".join(f"T c{k}[{W[k]}], ds{k}[{W[k]}];" for k in range(NS))}
    {" ".join(zone(k, f"c{k}[j] = (ONE - {{m}}) * g{k}[j]", f"memcpy(c{k}, g{k}, sizeof(T) * {W[k]});") for k in range(NS))}
    {bih}
    cell_bwd(xg, hg{sps}{prs}{"".join(f", c{k}" for k in range(NS))}, dxg{"" if shared else ", dhg"}{"".join(f", ds{k}" for k in range(NS))}{"".join(f", DP{p}" for p in range(NP))});
    {f"if (dhg != dxg) memcpy(dhg, dxg, sizeof(T) * {GH});" if shared else ""}
    {" ".join(zone(k, f"g{k}[j] = {{m}} * g{k}[j] + ds{k}[j]", f"memcpy(g{k}, ds{k}, sizeof(T) * {W[k]});") for k in range(NS))}
  }}
}}
"""
    bwd += f"const int64_t dhg_is_dxg = {int(shared)};\n"
    seq = _SEQUENCE.format(GH=GH, HO=W[0], HG=idx["HG"], S0=idx["S0"], HIN=idx["HIN"],
                           DHG=idx["DHG"], DH=idx["DH"])
    return fwd + bwd + seq, idx


# The whole time loop in C (no Python per step) where a BLAS ``gemm`` is at hand
# (:func:`blas_gemm`): column-major Fortran BLAS, so the row-major products are written
# transposed. Forward: ``hg_t = h_{t-1} WT`` with ``WT = W_hh^T [HO, GH]`` row-major is
# ``hg_t^T = WT^T h^T``, i.e. ``gemm(N, N, GH, B, HO, WT, GH, h, HO, hg, GH)``. Backward:
# ``dh = dhg_t W_hh`` (``W_hh [GH, HO]``) is ``gemm(N, N, HO, B, GH, W_hh, HO, dhg, GH, dh, HO)``.
_SEQUENCE = """
typedef void (*gemm_t)(const char *, const char *, const int *, const int *, const int *,
                       const T *, const T *, const int *, const T *, const int *, const T *,
                       T *, const int *);
/* the integers are stored in 64 bits and passed as int *: on a little-endian machine a BLAS
   with 32-bit integers (LP64) and one with 64-bit integers (ILP64) read the same values */
#define I_(v) ((const int *)&(v))
/* MKL's cblas_?gemm_compute with the weight packed once per sequence (cblas_?gemm_pack, by
   the caller): row-major C[m, n] = A[m, k] Bp, Bp the packed [k, n] operand. Its integers
   are declared 64-bit: on x86-64 and AArch64 each one fills a register or an 8-byte stack
   slot, so a callee with 32-bit integers reads the same values */
typedef void (*compute_t)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T *,
                          int64_t, const void *, int64_t, T, T *, int64_t);
#define PACKED_(m, n, k, A, lda, C, ldc) \
  ((compute_t)compute)(101, 111, 151, (m), (n), (k), (A), (lda), packed, (n), ZERO_, (C), (ldc))
/* PyTorch's at::native::cpublas::brgemm for float (oneDNN's JIT micro-kernel, float32 only):
   row-major C[M, N] = A[M, K] Bm[K, N] (add_C 0: C overwritten), leading dimensions given */
typedef void (*brgemm_t)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, _Bool,
                         const T *, const T *, T *, _Bool);
#define BRGEMM_(m, n, k, A, lda, Bm, ldb, C, ldc) \
  ((brgemm_t)brg)((m), (n), (k), (lda), (ldb), (ldc), 0, (A), (Bm), (C), 0)
static const int64_t GH_ = {GH}, HO_ = {HO};
static const T ONE_ = 1, ZERO_ = 0;

void gemm_rows(void *gemm, int64_t M, int64_t N, int64_t K, T *A, T *Bm, T *C) {{
  /* row-major C[M, N] = A[M, K] Bm[K, N], as the loops below call it (a self-test) */
  ((gemm_t)gemm)("N", "N", I_(N), I_(M), I_(K), &ONE_, Bm, I_(N), A, I_(K), &ZERO_, C, I_(N));
}}

void packed_rows(void *compute, const void *packed, int64_t M, int64_t N, int64_t K, T *A,
                 T *C) {{
  /* row-major C[M, N] = A[M, K] Bp, as the loops below call it (a self-test) */
  PACKED_(M, N, K, A, K, C, N);
}}

void brgemm_rows(void *brg, int64_t M, int64_t N, int64_t K, T *A, T *Bm, T *C) {{
  /* row-major C[M, N] = A[M, K] Bm[K, N], as the loops below call it (a self-test) */
  BRGEMM_(M, N, K, A, K, Bm, N, C, N);
}}

static void gemv_rows(int64_t n, int64_t k, const T *restrict W, const T *restrict x,
                      T *restrict y) {{
  /* y[n] = W[n, k] x[k], W row-major: four rows per pass over x (one row of a batch reads
     W once, as it is; the compiler vectorises each row's sum) */
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {{
    const T *w0 = W + r * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int64_t j = 0; j < k; j++) {{
      const T xj = x[j];
      a0 += w0[j] * xj;
      a1 += w1[j] * xj;
      a2 += w2[j] * xj;
      a3 += w3[j] * xj;
    }}
    y[r] = a0;
    y[r + 1] = a1;
    y[r + 2] = a2;
    y[r + 3] = a3;
  }}
  for (; r < n; r++) {{
    T a = 0;
    for (int64_t j = 0; j < k; j++)
      a += W[r * k + j] * x[j];
    y[r] = a;
  }}
}}

static void brgemm_panels(void *brg, int64_t nb, int64_t m, int64_t n, int64_t k, const T *A,
                          int64_t lda, const T *Wp, T *C, int64_t ldc) {{
  /* C[m, n] = A[m, k] Bm[k, n] with Bm stored as column panels of nb (nb <= 0 or >= n: one
     panel, Bm itself, row-major): panel j, columns j..j+w of Bm (w = nb, the last one
     narrower), is a contiguous row-major [k, w] at Wp + j k. One call per panel: its [k, w]
     block stays in the core's own cache while every row of A passes over it, and is read
     from memory in order */
  if (nb <= 0)
    nb = n;
  for (int64_t j = 0; j < n; j += nb) {{
    int64_t w = n - j < nb ? n - j : nb;
    BRGEMM_(m, w, k, A, lda, Wp + j * k, w, C + j, ldc);
  }}
}}

static void brgemm_slices(void *brg, int64_t kb, int64_t m, int64_t n, int64_t k, const T *A,
                          int64_t lda, const T *Bm, int64_t ldb, T *C, int64_t ldc) {{
  /* BRGEMM_ over slices of kb of the inner dimension, each after the first added to C (kb <= 0
     or >= k: one call), so that a [kb, n] slice of Bm stays in the core's own cache while
     every row of A passes over it */
  if (kb <= 0)
    kb = k;
  for (int64_t p = 0; p < k; p += kb)
    ((brgemm_t)brg)(m, n, (k - p < kb ? k - p : kb), lda, ldb, ldc, p > 0, A + p, Bm + p * ldb,
                    C, 0);
}}

void seq_fwd(void **P, int64_t B, int64_t T_, int64_t reverse, int64_t grad, void *gemm,
             T *WT, int64_t w_is_whh, void *compute, const void *packed, void *brg,
             int64_t nb) {{
  /* WT: W_hh^T [HO, GH] row-major, or (w_is_whh) W_hh [GH, HO] itself, read transposed
     (w_is_whh 2: a batch of one row through gemv_rows, else gemm);
     packed (not NULL): W_hh^T packed for compute, WT unused; else brg (not NULL, WT not
     w_is_whh): the product through brgemm instead of gemm, WT then W_hh^T in column panels
     of nb (brgemm_panels; nb 0: one panel, W_hh^T itself) */
  T *HG = (T *)P[{HG}], *S0 = (T *)P[{S0}], *HIN = (T *)P[{HIN}];
  int64_t b = B;
  for (int64_t i = 0; i < T_; i++) {{
    int64_t t = reverse ? T_ - 1 - i : i, prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
    int64_t th = grad ? t : 0;
    T *h = (HIN ? HIN : S0) + prev * B * HO_;
    if (packed)
      PACKED_(b, GH_, HO_, h, HO_, HG + th * B * GH_, GH_);
    else if (brg && !w_is_whh)
      brgemm_panels(brg, nb, b, GH_, HO_, h, HO_, WT, HG + th * B * GH_, GH_);
    else if (w_is_whh == 2 && b == 1)
      gemv_rows(GH_, HO_, WT, h, HG + th * B * GH_);
    else if (w_is_whh)
      ((gemm_t)gemm)("T", "N", I_(GH_), I_(b), I_(HO_), &ONE_, WT, I_(HO_), h, I_(HO_), &ZERO_,
                     HG + th * B * GH_, I_(GH_));
    else
      ((gemm_t)gemm)("N", "N", I_(GH_), I_(b), I_(HO_), &ONE_, WT, I_(GH_), h, I_(HO_), &ZERO_,
                     HG + th * B * GH_, I_(GH_));
    step_fwd(P, B, t, th, prev, next);
  }}
}}

void seq_bwd(void **P, int64_t B, int64_t T_, int64_t reverse, void *gemm, T *W, void *compute,
             const void *packed, void *brg, int64_t kb) {{
  /* W: W_hh [GH, HO] row-major; packed (not NULL): W_hh packed for compute, W unused; else
     brg (not NULL): the product through brgemm instead of gemm, over slices of kb of GH */
  T *DHG = (T *)P[{DHG}], *DH = (T *)P[{DH}];
  int64_t b = B;
  for (int64_t i = 0; i < T_; i++) {{
    int64_t t = reverse ? i : T_ - 1 - i, prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
    step_bwd(P, B, t, t, prev, next, i == 0);
    if (packed)
      PACKED_(b, HO_, GH_, DHG + t * B * GH_, GH_, DH, HO_);
    else if (brg)
      brgemm_slices(brg, kb, b, HO_, GH_, DHG + t * B * GH_, GH_, W, HO_, DH, HO_);
    else
      ((gemm_t)gemm)("N", "N", I_(HO_), I_(b), I_(GH_), &ONE_, W, I_(HO_), DHG + t * B * GH_,
                     I_(GH_), &ZERO_, DH, I_(HO_));
  }}
}}
"""


# ------------------------------------------------------------------------------- tracing
def _trace_batch(weight_shapes) -> int:
    taken = {s for shape in weight_shapes for s in shape}
    return next(b for b in (3, 5, 7, 11, 13, 17) if b not in taken)


def generate(cell: Cell, widths: tuple[int, int, tuple[int, ...]], weight_shapes,
             dtype: torch.dtype) -> tuple[str, dict]:
    """C source of ``cell``'s step kernels for ``widths = (GX, GH, state widths)`` and the
    given cell weight shapes; raises :class:`Unsupported` naming what does not translate."""
    GX, GH, W = widths
    NS, NP = cell.num_states, len(weight_shapes)
    B = _trace_batch(weight_shapes)
    gen = torch.Generator().manual_seed(0)
    xg = torch.randn(B, GX, generator=gen, dtype=dtype)
    hg = torch.randn(B, GH, generator=gen, dtype=dtype)
    states = [torch.rand(B, w, generator=gen, dtype=dtype) for w in W]
    weights = [torch.randn(s, generator=gen, dtype=dtype) for s in weight_shapes]
    cots = [torch.randn(B, w, generator=gen, dtype=dtype) for w in W]

    def fwd(xg, hg, *rest):
        new = cell.update(xg, hg, tuple(rest[:NS]), *rest[NS:])
        return tuple(new)

    def bwd(xg, hg, *rest):
        primals, cot = rest[:NS + NP], rest[NS + NP:]
        _, vjp = torch.func.vjp(fwd, xg, hg, *primals)
        return vjp(tuple(cot))

    try:
        with torch.no_grad():
            gf = make_fx(fwd)(xg, hg, *states, *weights)
        gb = make_fx(bwd)(xg, hg, *states, *weights, *cots)
    except Unsupported:
        raise
    except Exception as e:  # a data-dependent branch, an op make_fx cannot trace, ...
        raise Unsupported(f"tracing the update failed: {type(e).__name__}: {e}") from e
    kinds = ["row", "row"] + ["row"] * NS + ["par"] * NP
    try:
        lines_f, outs_f = emit_graph(gf, kinds, B)
        lines_b, outs_b = emit_graph(gb, kinds + ["row"] * NS, B)
    except Unsupported:
        raise
    except Exception as e:  # an argument form the translation did not foresee
        raise Unsupported(f"translating the update failed: {type(e).__name__}: {e}") from e
    if len(outs_f) != NS or len(outs_b) != 2 + NS + NP:
        raise Unsupported(f"the update returned {len(outs_f)} states, expected {NS}")
    for v, w in zip(outs_f, W):
        if v is None or v.kind not in ("row", "const") or v.width not in (1, w):
            raise Unsupported("a new state is not a [B, H] row value")
    pw = [int(torch.Size(s).numel()) for s in weight_shapes]
    n_in = 2 + NS + NP
    src = _prelude(dtype)
    src += _row_function("cell_fwd", lines_f, outs_f, n_in,
                         [(f"out{k}", W[k], False) for k in range(NS)])
    # the same value for both (an LSTM's: xg and hg are summed first): written once, and
    # the caller may pass one buffer as DXG and DHG (dhg_is_dxg)
    shared = outs_b[0] is not None and outs_b[0] is outs_b[1] and GX == GH
    dests = ([("dxg", GX, False)] + ([] if shared else [("dhg", GH, False)])
             + [(f"ds{k}", W[k], False) for k in range(NS)]
             + [(f"dp{p}", pw[p], True) for p in range(NP)])
    src += _row_function("cell_bwd", lines_b, outs_b[:1] + outs_b[1 + shared:], n_in + NS,
                         dests)
    steps, idx = _step_functions(NS, NP, GX, GH, list(W), shared)
    return src + steps, idx


# ----------------------------------------------------------------------------- compiling
def find_compiler() -> str | None:
    """The C compiler to use (``$CC``, else ``cc``, ``gcc``, ``clang`` on ``PATH``), or None
    (looked up once per value of ``$CC`` and ``$PATH``)."""
    return _find_compiler(os.environ.get("CC", ""), os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=8)
def _find_compiler(cc: str, path: str) -> str | None:
    for name in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(name)
        if path:
            return path
    return None


# -ffast-math at compile time only: linked with it (GCC < 13, -shared), crtfastmath.o would
# switch the whole process to flush-to-zero / denormals-are-zero when the library loads,
# changing every other computation in it (PyTorch's, numpy's); linked separately it does not
COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC", "-c")
LINK_FLAGS = ("-shared",)
FLAGS = COMPILE_FLAGS + LINK_FLAGS


def _vector_flags() -> tuple[str, ...]:
    """On an x86 CPU with AVX-512, full-width vectors: GCC and Clang default to 256 bits
    there, and the row loops (and libmvec's exp / tanh) run faster at 512."""
    if platform.machine().lower() in ("x86_64", "amd64") and "avx512f" in _machine_tag().split():
        return ("-mprefer-vector-width=512",)
    return ()


def cache_dir() -> Path:
    root = os.environ.get("RECUR_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
                                        ) / "recur"
    return base / "cpu_kernels"


def _machine_tag() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return platform.machine() + flags


def compile_library(src: str) -> ctypes.CDLL:
    """Compile ``src`` (or reuse the cached build) and load it; raises ``RuntimeError`` with
    the compiler's message when compiling fails."""
    cc = find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc or clang on PATH)")
    compile_flags = COMPILE_FLAGS + _vector_flags()
    key = hashlib.sha256("\0".join((src, cc, *compile_flags, *LINK_FLAGS, _machine_tag())
                                    ).encode()).hexdigest()[:24]
    out = cache_dir() / f"recur_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            c_path, o_path, so_path = (Path(tmp) / n for n in ("k.c", "k.o", "k.so"))
            c_path.write_text(src)
            for cmd in ([cc, *compile_flags, str(c_path), "-o", str(o_path)],
                        [cc, *LINK_FLAGS, str(o_path), "-o", str(so_path), "-lmvec", "-lm"]):
                proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
                if proc.returncode:
                    raise RuntimeError(f"{cc} failed ({proc.returncode}): "
                                       f"{proc.stderr[-2000:]}")
            os.replace(so_path, out)
    return ctypes.CDLL(str(out))


@dataclass
class Kernel:
    """A loaded step kernel: ``fwd(P, B, t, th, prev, next)``, ``bwd(P, B, t, th, prev, next,
    first)``, the whole time loops ``seq_fwd(P, B, T, reverse, grad, gemm, WT, w_is_whh,
    compute, packed, brg, nb)`` and ``seq_bwd(P, B, T, reverse, gemm, W, compute, packed, brg,
    kb)`` (``gemm``: :func:`blas_gemm`'s address; ``compute``, ``packed``:
    :func:`blas_packed`'s compute and a weight packed for it, or NULL; ``brg``:
    :func:`blas_brgemm`'s address, or NULL; ``nb``: ``WT`` stored as column panels of this
    width for the forward's ``brg`` products, ``kb``: the backward's on slices of this many
    rows of ``W_hh``, 0: whole), the self-tests ``gemm_rows(gemm, M, N, K, A, B, C)``,
    ``packed_rows(compute, packed, M, N, K, A, C)`` and ``brgemm_rows(brg, M, N, K, A, B, C)``, the pointer-table
    layout ``index`` (name -> slot), and ``dhg_is_dxg``: the backward's cotangents of ``xg``
    and ``hg`` are the same, so one buffer may serve as DXG and DHG."""

    fwd: object
    bwd: object
    seq_fwd: object
    seq_bwd: object
    gemm_rows: object
    packed_rows: object
    brgemm_rows: object
    index: dict
    lib: ctypes.CDLL
    dhg_is_dxg: bool = False


#: the Fortran BLAS names of ``gemm`` per dtype, as PyTorch's own library may export them
_GEMM_NAMES = {torch.float32: ("sgemm_", "sgemm"), torch.float64: ("dgemm_", "dgemm")}


@functools.lru_cache(maxsize=2)
def blas_gemm(dtype: torch.dtype) -> int | None:
    """The address of a Fortran BLAS ``sgemm`` / ``dgemm`` already in the process, from
    PyTorch's CPU library (its x86 builds link MKL in and export it), or None. The generated
    loops pass its integers so that 32- and 64-bit-integer builds both read them; the caller
    self-tests it before use (:func:`recur.ops.cpu.time_loop_gemm`)."""
    lib = _torch_cpu_library()
    for sym in _GEMM_NAMES[dtype] if lib is not None else ():
        fn = getattr(lib, sym, None)
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value
    return None


#: ``at::native::cpublas::brgemm(M, N, K, ld_a, ld_b, ld_c, add_C, const float *A, const
#: float *B, float *C, is_vnni)`` as PyTorch's CPU library exports it (C++ name; a library
#: whose function has other parameters has another name, so is not found)
_BRGEMM_FLOAT = "_ZN2at6native7cpublas6brgemmEllllllbPKfS3_Pfb"


@functools.lru_cache(maxsize=2)
def blas_brgemm(dtype: torch.dtype) -> int | None:
    """The address of PyTorch's float32 ``brgemm`` (oneDNN's JIT micro-kernel where the CPU
    has AVX2, else PyTorch's ``gemm``), or None: another dtype, or a library without it. The
    caller self-tests it before use (:func:`recur.ops.cpu.time_loop_brgemm`)."""
    lib = _torch_cpu_library() if dtype == torch.float32 else None
    fn = getattr(lib, _BRGEMM_FLOAT, None) if lib is not None else None
    return None if fn is None else ctypes.cast(fn, ctypes.c_void_p).value


@functools.lru_cache(maxsize=1)
def _torch_cpu_library() -> ctypes.CDLL | None:
    """PyTorch's CPU library (``libtorch_cpu``, where its x86 builds link MKL in), or None."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        if (lib_dir / name).exists():
            try:
                return ctypes.CDLL(str(lib_dir / name))
            except OSError:
                continue
    return None


#: MKL's out-of-place scaled copy-transpose (C interface) per dtype, as PyTorch exports it
_OMATCOPY_NAMES = {torch.float32: ("MKL_Somatcopy", ctypes.c_float),
                   torch.float64: ("MKL_Domatcopy", ctypes.c_double)}


@functools.lru_cache(maxsize=2)
def blas_omatcopy(dtype: torch.dtype):
    """``transpose(src, dest, rows, cols)``: MKL's ``mkl_?omatcopy`` writing the row-major
    ``[cols, rows]`` transpose of the row-major contiguous ``[rows, cols]`` at ``src`` into
    ``dest`` (addresses), from PyTorch's CPU library; or None (no MKL, another dtype). The
    caller self-tests it before use (:func:`recur.ops.cpu.transposed`)."""
    name, scalar = _OMATCOPY_NAMES.get(dtype, (None, None))
    lib = _torch_cpu_library()
    fn = getattr(lib, name, None) if lib is not None and name else None
    if fn is None:
        return None
    size = ctypes.c_size_t
    fn.argtypes = [ctypes.c_char, ctypes.c_char, size, size, scalar, ctypes.c_void_p, size,
                   ctypes.c_void_p, size]
    fn.restype = None

    def transpose(src: int, dest: int, rows: int, cols: int) -> None:
        fn(b"R", b"T", rows, cols, 1.0, src, cols, dest, rows)

    return transpose


@dataclass(frozen=True)
class PackedGemm:
    """MKL's packed GEMM (``cblas_sgemm_pack_get_size`` / ``_pack`` / ``_compute``) as
    PyTorch's CPU library exports it: ``size(m, n, k)`` bytes of a packed ``[k, n]`` operand,
    ``pack(dest, src, trans, m, n, k, ld)`` (row-major ``src``, ``trans``: read it
    transposed), and ``compute``, the address the generated loops call."""

    size: object
    pack: object
    compute: int


@functools.lru_cache(maxsize=2)
def blas_packed(dtype: torch.dtype) -> PackedGemm | None:
    """:class:`PackedGemm` for ``dtype`` from PyTorch's CPU library, or None (no MKL, or
    ``dtype`` other than float32: MKL packs float32 only there). The caller self-tests it
    before use (:func:`recur.ops.cpu.packed_gemm`)."""
    if dtype != torch.float32:
        return None
    lib = _torch_cpu_library()
    try:
        size, pack, compute = (getattr(lib, f"cblas_sgemm_{n}")
                               for n in ("pack_get_size", "pack", "compute"))
    except AttributeError:  # no library (None has no such attribute either), or no MKL
        return None
    i64 = ctypes.c_int64
    size.argtypes, size.restype = [i64, i64, i64, i64], ctypes.c_size_t
    pack.argtypes = [i64, i64, i64, i64, i64, i64, ctypes.c_float, ctypes.c_void_p, i64,
                     ctypes.c_void_p]
    pack.restype = None

    def size_of(m: int, n: int, k: int) -> int:
        return size(162, m, n, k)  # CblasBMatrix

    def pack_into(dest: int, src: int, trans: bool, m: int, n: int, k: int, ld: int) -> None:
        pack(101, 162, 112 if trans else 111, m, n, k, 1.0, src, ld, dest)  # row-major, B

    return PackedGemm(size_of, pack_into, ctypes.cast(compute, ctypes.c_void_p).value)


@functools.cache
def _recur_sources() -> str:
    """Digest of the code a built-in cell's kernel source comes from: recur's cells and this
    generator."""
    here = Path(__file__).resolve()
    files = sorted((here.parent.parent / "cells").glob("*.py")) + [here]
    digest = hashlib.sha256(torch.__version__.encode())
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def _own_cell(cell: Cell) -> bool:
    """Whether ``cell``'s update is recur's own code: a function of ``recur.cells`` whose
    closure, if any, holds only such cells (``layernorm.with_input_norm``'s derived cell), so
    its source can be kept on disk under a key that names that code."""
    fn = cell.update
    if not getattr(fn, "__module__", "").startswith("recur.cells."):
        return False
    closure = getattr(fn, "__closure__", 1)
    return closure is None or (isinstance(closure, tuple) and all(
        isinstance(c.cell_contents, Cell) and _own_cell(c.cell_contents) for c in closure))


def _identity(cell: Cell) -> tuple:
    """What names an own cell's code: its declaration and, for a derived cell, the cells its
    update closes over (recursively)."""
    fn = cell.update
    inner = tuple(_identity(c.cell_contents) for c in (fn.__closure__ or ()))
    return (cell.name, cell.num_gates, cell.num_states, fn.__module__, fn.__qualname__,
            cell.native_mode, cell.norm, cell.forget_gate, inner)


def generated(cell: Cell, widths, weight_shapes, dtype: torch.dtype) -> tuple[str, dict]:
    """:func:`generate`'s result; for recur's own cells kept on disk next to the compiled
    kernels (``src_<key>.json``, the key naming the cell, sizes, dtype, torch's version and
    the digest of recur's cell and generator code), so a process that finds it skips the
    trace (whose first use imports much of ``torch._dynamo``: seconds). A user's cell is
    traced every time: its code is not recur's to name."""
    if not _own_cell(cell):
        return generate(cell, widths, weight_shapes, dtype)
    path = None
    try:
        what = (_identity(cell), widths, [tuple(s) for s in weight_shapes], str(dtype),
                _recur_sources())
        path = cache_dir() / f"src_{hashlib.sha256(repr(what).encode()).hexdigest()[:24]}.json"
        kept = json.loads(path.read_text())
        return kept["src"], {str(k): int(v) for k, v in kept["index"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        pass                                  # not kept yet, or unreadable: trace again
    src, index = generate(cell, widths, weight_shapes, dtype)
    if path is None:                          # recur's own files unreadable: keep nothing
        return src, index
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as f:
            tmp = f.name
            json.dump({"src": src, "index": index}, f)
        os.replace(tmp, path)                 # atomic: a reader sees all of it or nothing
    except OSError:                           # a read-only cache: trace next time too
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return src, index


_CACHE: dict = {}
_LOCK = threading.Lock()


def kernel_for(cell: Cell, widths, weight_shapes, dtype: torch.dtype) -> Kernel:
    """The compiled kernel of ``cell`` for these sizes (cached per process and on disk).
    Raises :class:`Unsupported` (cell) or ``RuntimeError`` (compiler); both are cached too."""
    key = (cell, widths, tuple(tuple(s) for s in weight_shapes), dtype)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            try:
                src, index = generated(cell, widths, weight_shapes, dtype)
                lib = compile_library(src)
                i64 = ctypes.c_int64
                lib.step_fwd.argtypes = [ctypes.c_void_p, i64, i64, i64, i64, i64]
                lib.step_fwd.restype = None
                lib.step_bwd.argtypes = [ctypes.c_void_p, i64, i64, i64, i64, i64, i64]
                lib.step_bwd.restype = None
                vp = ctypes.c_void_p
                lib.seq_fwd.argtypes = [vp, i64, i64, i64, i64, vp, vp, i64, vp, vp, vp, i64]
                lib.seq_fwd.restype = None
                lib.seq_bwd.argtypes = [vp, i64, i64, i64, vp, vp, vp, vp, vp, i64]
                lib.seq_bwd.restype = None
                for name in ("gemm_rows", "brgemm_rows"):
                    getattr(lib, name).argtypes = [vp, i64, i64, i64, vp, vp, vp]
                    getattr(lib, name).restype = None
                lib.packed_rows.argtypes = [vp, vp, i64, i64, i64, vp, vp]
                lib.packed_rows.restype = None
                hit = Kernel(lib.step_fwd, lib.step_bwd, lib.seq_fwd, lib.seq_bwd,
                             lib.gemm_rows, lib.packed_rows, lib.brgemm_rows, index, lib,
                             bool(ctypes.c_int64.in_dll(lib, "dhg_is_dxg").value))
            except (Unsupported, RuntimeError) as e:
                hit = e
            _CACHE[key] = hit
    if isinstance(hit, Exception):
        raise hit
    return hit
