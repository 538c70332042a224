"""Streaming for the multi-layer modules: ``step`` for online inference, ``stateful`` for
truncated backpropagation through time.

``y_t, state = layer.step(x_t, state)`` feeds one time step ``x_t: [B, I]`` (or a chunk
``[T, B, I]``, ``[B, T, I]`` if batch_first) with the state carried by the caller; feeding a
sequence step by step gives exactly the full-sequence ``forward``, since each call is a
``forward`` over the step with ``hx`` = the previous state.

With ``stateful=True`` (constructor keyword, or set the attribute) a ``forward`` called
without ``hx`` starts from the final state of the previous call, detached from its graph
(truncated BPTT: gradients flow within a call, not across calls). The carried state is not a
parameter or buffer: it is not in ``state_dict`` and does not follow ``.to()``. Call
:meth:`reset_state` at the start of every new sequence (new epoch, new batch of streams);
a batch of a different size raises instead of silently reusing the wrong state.
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..ops.dispatch import requested_backend
from ..ops.onnx import exporting_onnx
from ..ops.reference import cell_step

#: per thread (the prepared steps own buffers) and module, ``(key, layers)`` of
#: :meth:`StreamingMixin._prepared_layers`; weakly keyed, so the module's copies, pickles and
#: state_dict never see the kernels' pointer tables
_PREPARED = threading.local()

_CELL_KERNELS = {"LSTM": torch._VF.lstm_cell, "GRU": torch._VF.gru_cell,
                 "RNN_TANH": torch._VF.rnn_tanh_cell, "RNN_RELU": torch._VF.rnn_relu_cell}


def _traced_or_autocast(x: Tensor) -> bool:
    """Autocast on for ``x``'s device, or compile / ONNX export running: then ``step`` runs
    ``forward`` on the one step, which handles them (checked cheaply: once per step)."""
    device = "cpu" if x.is_cpu else x.device.type
    return (torch.is_autocast_enabled(device) or torch.compiler.is_compiling()
            or exporting_onnx())


class StreamingMixin:
    """``step``, ``stateful`` and ``reset_state`` for :class:`recur.nn.RNNBase`."""

    stateful: bool = False
    _carried = None  # the detached final state of the last stateful forward, or None

    def step(self, x: Tensor, state=None):
        """Advance by one step (or a chunk) from ``state``.

        Args:
            x: one step ``[B, I]``, or a chunk ``[T, B, I]`` (``[B, T, I]`` if batch_first).
                For one unbatched stream use ``B = 1``.
            state: the previous ``state`` returned by ``step`` / ``forward``
                (``h: [L, B, Hout]``; LSTM ``(h, c)`` with ``c: [L, B, H]``); None: zeros
                (or the carried state if ``stateful``).

        Returns:
            ``y, state``: ``y: [B, Hout]`` for one step (``[T, B, Hout]`` / ``[B, T, Hout]``
            for a chunk, the last layer's h) and the new state, as from ``forward``.

        Raises ``ValueError`` for a bidirectional module (its reverse direction needs the
        whole sequence).
        """
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step: a bidirectional layer cannot run "
                             "step by step (its reverse direction reads the future); use "
                             "forward on the whole sequence")
        if not isinstance(x, Tensor) or x.dim() not in (2, 3):
            got = f"{x.dim()}-D" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}.step expects x of shape [B, I] (one "
                             f"step) or a 3-D chunk, got {got}")
        if x.dim() == 3:
            return self(x, state)
        backend = requested_backend(self.backend)
        if not self.stateful and not _traced_or_autocast(x):
            if backend in ("auto", "torch") and self._fast_step_ok(state):
                return self._step_cells(x, state)
            if backend in ("auto", "reference"):
                return self._step_update(x, state, backend == "auto")
        time_dim = 1 if self.batch_first else 0
        y, state = self(x.unsqueeze(time_dim), state)  # x: (1, B, I) or (B, 1, I)
        return y.squeeze(time_dim), state

    # Not stateful, no autocast, compile or export (``forward`` on the one step handles
    # those), then by backend: ``auto`` / ``torch`` on one of torch.nn's four cells with
    # nothing added -> :meth:`_step_cells`; ``auto`` / ``reference`` otherwise -> the cells'
    # declared update layer by layer, :meth:`_step_update` (what :func:`recur.ops.plan.plan_step`
    # runs for one step of a cell PyTorch has no kernel for); any other explicit backend ->
    # ``forward`` on the one step.
    def _fast_step_ok(self, state) -> bool:
        """Whether one step of this layer is exactly PyTorch's cell kernels, layer by layer:
        one of torch.nn's four cells with nothing added (no projection, no variant extras)
        and a state of that cell's form."""
        if not getattr(self, "_plain_native", False) or self.proj_size:
            return False
        if state is None:
            return True
        hs = state if isinstance(state, tuple) else (state,)
        if len(hs) != self.cell.num_states:
            return False
        for h in hs:
            if not isinstance(h, Tensor) or h.dim() != 3:
                return False
        return True

    def _step_update(self, x: Tensor, state, auto: bool):
        """One step ``x: [B, I]`` through the layers with the cells' update (the same
        per-layer weights, masks and layer norm as ``forward`` on a one-step sequence,
        without its planning and its per-sequence set-up): on ``auto`` without autograd the
        cpu backend's kernel (:func:`recur.ops.cpu.step_cpu`), else the reference loop's
        :func:`recur.ops.reference.cell_step`."""
        xt = x.unsqueeze(0)                                             # (1, B, I)
        self._check_input(xt)
        states = self._prepare_hx(state, xt, True)                     # each (L, B, H*)
        if auto and not self.training and not torch.is_grad_enabled() and x.is_cpu:
            prepared = self._prepared_layers(xt)
            if prepared is not None:
                return self._step_prepared(x, states, prepared)
        finals: list[list[Tensor]] = [[] for _ in states]
        inp = x
        from ..ops.cpu import step_cpu  # lazy, as the executors import the cpu backend

        for k, lw in enumerate(self._stack_weights(xt)):
            xg = F.linear(inp, lw.w_ih, lw.b_ih)                        # (B, G*H)
            if lw.xg_fn is not None:
                xg = lw.xg_fn(xg)
            prev = tuple(s[k] for s in states)
            zoneout = None if lw.zoneout is None else tuple(z[0] for z in lw.zoneout)
            new = None
            if auto and lw.w_hr is None and not lw.step_inputs:  # the cpu backend's kernel
                new = step_cpu(self.cell, xg, lw.w_hh, lw.b_hh, prev,
                               cell_weights=lw.cell_weights, h_mask=lw.h_mask, zoneout=zoneout)
            if new is not None:
                inp = new[0]
            else:
                new, inp = cell_step(
                    self.cell, xg, prev, lw.w_hh, lw.b_hh, w_hr=lw.w_hr,
                    cell_weights=lw.cell_weights,
                    step_inputs=tuple(p[0] for p in lw.step_inputs), h_mask=lw.h_mask,
                    zoneout=zoneout)
            for j, s in enumerate(new):
                finals[j].append(s)
            if self.dropout and self.training and k < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, training=True)
        out = tuple(torch.stack(f) for f in finals)                     # each (L, B, H*)
        return inp, (out[0] if len(out) == 1 else out)

    def _prepared_layers(self, xt: Tensor):
        """Per layer ``(weights, PreparedStep, fused)`` (:func:`recur.ops.cpu.prepare_step_cpu`;
        ``fused``: the kernel takes the raw projection and applies LN_x, then adds ``b_ih``,
        itself: :func:`recur.cells.layernorm.with_input_norm`) for
        stepping a batch like ``xt: [1, B, I]`` in eval mode, or None where a layer cannot run
        that way (the caller then steps as in training). Kept between calls while the batch
        size, the dtype, inference mode (buffers made in it cannot be written outside it), the
        zoneout rates and every parameter's storage and shape stay the same: eval mode draws
        no masks, and the kernel tables point at the parameters themselves, so a write to a
        weight is seen at the next step whether or not it bumps the weight's version (a
        fused AdamW step or a write through ``.data`` does not), and the layer-norm cells'
        kernel reads LN_x's bias and ``b_ih`` apart instead of a sum of them; so where the key
        matches, every address in the kernel's table is that of a current parameter's
        storage, or of a buffer or constant the step owns (a layer whose LN_x stays outside
        the kernel would read a sum: such a stack is prepared, not kept). One set per
        thread, so threads stepping the same module do not share buffers. Prepared anew at
        every call: parametrized modules (a parametrization may hold state the key does not
        see), modules with a weight that is not a registered parameter (pruning,
        ``weight_norm`` and ``spectral_norm`` hooks put a tensor they recompute in its
        place, which the key over the parameters does not see) and modules with a parameter
        that is not contiguous (the step would hold a contiguous copy)."""
        B, dtype = xt.shape[1], xt.dtype
        params = [p for p in (self.parameters() if self._modules
                              else self._parameters.values()) if p is not None]
        # per step, so the cheap forms: parametrize.is_parametrized's test on _modules, the
        # weights' names as a subset of the registered ones, the tensor methods mapped
        keep = (not isinstance(self._modules.get("parametrizations"), nn.ModuleDict)
                and self._parameters.keys() >= self._step_weight_names()
                and all(map(Tensor.is_contiguous, params)))
        key = (B, dtype, torch.is_inference_mode_enabled(), getattr(self, "zoneout", None),
               (tuple(map(Tensor.data_ptr, params)), tuple(map(Tensor.size, params)))
               if keep else None)
        cache = getattr(_PREPARED, "modules", None)
        if cache is None:
            cache = _PREPARED.modules = weakref.WeakKeyDictionary()
        hit = cache.get(self)
        if hit is not None and hit[0] == key:
            return hit[1]
        # lazy, as the executors import the cpu backend
        from ..ops.cpu import input_norm_in_kernel, prepare_step_cpu

        widths = [s[-1] for s in self._state_shapes(B)]
        layers = []
        for lw in self._stack_weights(xt):
            step, folded = None, None
            if lw.w_hr is None and not lw.step_inputs:
                zoneout = None if lw.zoneout is None else tuple(z[0] for z in lw.zoneout)
                # one operator call fewer per step; the kernel adds b_ih after LN_x
                folded = input_norm_in_kernel(self.cell, lw, b_ih_apart=True)
                cell, weights = folded or (self.cell, lw.cell_weights)
                step = prepare_step_cpu(cell, lw.w_ih.shape[0], lw.w_hh, lw.b_hh, widths, B,
                                        dtype, cell_weights=weights, h_mask=lw.h_mask,
                                        zoneout=zoneout)
            if step is None:
                layers = None
                break
            # LN_x outside the kernel reads the sum of its bias and b_ih, made at this
            # step's first read of it (InputNorm.bias): not kept
            keep = keep and (folded is not None or getattr(lw.xg_fn, "parts", None) is None)
            layers.append((lw, step, folded is not None))
        if keep:
            cache[self] = (key, layers)
        return layers

    def _step_weight_names(self) -> frozenset[str]:
        """The names of every weight a step reads: torch.nn's, the declared cell weights,
        LN_x's gain and bias (fixed at construction; made once)."""
        names = self.__dict__.get("_step_names")
        if names is None:
            groups = (*getattr(self, "_cell_param_names", ()), *getattr(self, "_ln_x_names", ()))
            names = self.__dict__["_step_names"] = frozenset(
                (*self._flat_weights_names, *(n for group in groups for n in group)))
        return names

    def _step_prepared(self, x: Tensor, states: tuple[Tensor, ...], layers):
        """One step ``x: [B, I]`` through :meth:`_prepared_layers` (eval mode, no autograd):
        per layer the input projection (and LN_x, unless the kernel applies it), then one C
        call."""
        finals: list[list[Tensor]] = [[] for _ in states]
        inp = x
        for k, (lw, step, fused) in enumerate(layers):
            xg = F.linear(inp, lw.w_ih, lw.b_ih)                        # (B, G*H)
            if lw.xg_fn is not None and not fused:
                xg = lw.xg_fn(xg)
            inp = step(xg.contiguous(), tuple(s[k] for s in states))   # views of step's buffers
            for j, s in enumerate(inp):
                finals[j].append(s)
            inp = inp[0]
        out = tuple(torch.stack(f) for f in finals)                     # each (L, B, H*)
        return out[0][-1], (out[0] if len(out) == 1 else out)         # y: a view of h_n

    def _step_cells(self, x: Tensor, state):
        """One step ``x: [B, I]`` through the layers with ``torch._VF``'s cell kernels (the
        kernels of torch.nn.LSTMCell & co.; same numbers as ``forward`` on a one-step
        sequence, without its per-call planning)."""
        kernel = _CELL_KERNELS[self.cell.native_mode]
        lstm = self.cell.native_mode == "LSTM"
        L, H = self.num_layers, self.hidden_size
        if state is None:
            zeros = x.new_zeros(L, x.shape[0], H)
            state = (zeros, zeros) if lstm else zeros
        hs, cs = (state[0], state[1]) if lstm else (state, None)
        if hs.shape != (L, x.shape[0], H):
            raise ValueError(f"{type(self).__name__}.step: state h must have shape "
                             f"{(L, x.shape[0], H)}, got {tuple(hs.shape)}")
        inp, new_h, new_c = x, [], []
        for layer in range(L):
            n_ih, n_hh, n_bi, n_bh, _ = self._layer_names[layer]
            w_ih, w_hh = self._weight(n_ih), self._weight(n_hh)
            b_ih = self._weight(n_bi) if n_bi else None
            b_hh = self._weight(n_bh) if n_bh else None
            if lstm:
                h, c = kernel(inp, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)
                new_c.append(c)
            else:
                h = kernel(inp, hs[layer], w_ih, w_hh, b_ih, b_hh)
            new_h.append(h)
            inp = h
            if self.dropout and self.training and layer < L - 1:
                inp = F.dropout(inp, self.dropout, training=True)
        h_n = new_h[0].unsqueeze(0) if L == 1 else torch.stack(new_h)  # (L, B, H)
        if not lstm:
            return h, h_n
        c_n = new_c[0].unsqueeze(0) if L == 1 else torch.stack(new_c)
        return h, (h_n, c_n)

    def reset_state(self) -> None:
        """Forget the state carried by ``stateful``: the next forward starts from zeros."""
        self._carried = None

    def _stateful_hx(self, input):
        """The ``hx`` for a stateful forward without ``hx``: the carried state or None."""
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}: stateful=True needs a unidirectional "
                             "layer (the reverse direction's state cannot carry over)")
        if self._carried is None:
            return None
        h = self._carried[0] if isinstance(self._carried, tuple) else self._carried
        if isinstance(input, PackedSequence):
            batch = int(input.batch_sizes[0])
        else:
            batch = input.shape[0 if self.batch_first else 1] if input.dim() == 3 else None
        carried_batch = h.shape[1] if h.dim() == 3 else None
        if batch != carried_batch:
            def said(n):
                return "unbatched input" if n is None else f"a batch of {n}"
            raise ValueError(f"{type(self).__name__} (stateful): the carried state is for "
                             f"{said(carried_batch)}, this input is {said(batch)}; call "
                             "reset_state() before a new sequence or batch size")
        return self._carried

    def _carry(self, state) -> None:
        """Keep ``state`` (``h`` or ``(h, c)``), detached, for the next stateful forward."""
        self._carried = (tuple(s.detach() for s in state) if isinstance(state, tuple)
                         else state.detach())
