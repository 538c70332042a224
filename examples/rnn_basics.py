"""RNN basics: what goes in, what comes out, and how big the weights are.

Three short lessons, printing shapes rather than numbers:

1. an ``RNNCell`` stepped by hand over a sequence (batch 1, sequence 3, input 4, hidden 2):
   the cell sees one time step ``[B, I]`` and returns the next hidden state ``[B, H]``;
2. ``recur.RNN`` with ``num_layers=2`` runs the whole sequence ``[T, B, I]`` at once and returns
   every step's top-layer output ``[T, B, H]`` and every layer's last state ``[L, B, H]``;
3. ``RNN``, ``LSTM`` and ``GRU`` side by side: same layer, but the LSTM stacks 4 gates
   (i, f, g, o) and the GRU 3 (r, z, n) into each weight, so their weights have 4x and 3x the
   RNN's rows.

Run::

    python examples/rnn_basics.py      # about a second after the imports, on a CPU

Every recur module here is a drop-in for the torch.nn class of the same name.
"""

from __future__ import annotations

import torch

import recur

BATCH, SEQ, INPUT, HIDDEN = 1, 3, 4, 2


def shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(n) for n in t.shape) + "]"


def cell_by_hand() -> torch.Tensor:
    """Step an RNNCell over SEQ time steps; returns the last hidden state ``[B, H]``."""
    print(f"1. RNNCell(input_size={INPUT}, hidden_size={HIDDEN}) stepped by hand")
    cell = recur.RNNCell(INPUT, HIDDEN)
    xs = torch.randn(SEQ, BATCH, INPUT)  # (T, B, I)
    h = torch.zeros(BATCH, HIDDEN)  # (B, H)
    print(f"   sequence {shape(xs)} = [seq, batch, input]; h0 {shape(h)} = [batch, hidden]")
    for t, x in enumerate(xs):  # x: (B, I)
        h = cell(x, h)  # (B, H)
        print(f"   step {t}: input {shape(x)} -> hidden {shape(h)}")
    # the same loop is what RNN runs over the whole sequence: give it the cell's weights
    rnn = recur.RNN(INPUT, HIDDEN)
    rnn.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    _, h_n = rnn(xs, h.new_zeros(1, BATCH, HIDDEN))  # (1, B, H)
    print(f"   RNN with the cell's weights ends in the same state: "
          f"{torch.allclose(h_n[0], h, atol=1e-6)}")
    return h


def whole_sequence() -> tuple[torch.Tensor, torch.Tensor]:
    """Run a 2-layer RNN over the sequence in one call; returns ``output, h_n``."""
    layers = 2
    print(f"\n2. RNN(input_size={INPUT}, hidden_size={HIDDEN}, num_layers={layers}) "
          "over the whole sequence")
    rnn = recur.RNN(INPUT, HIDDEN, num_layers=layers)
    xs = torch.randn(SEQ, BATCH, INPUT)  # (T, B, I)
    h0 = torch.zeros(layers, BATCH, HIDDEN)  # (L, B, H)
    out, h_n = rnn(xs, h0)  # (T, B, H), (L, B, H)
    print(f"   input  {shape(xs)} = [seq, batch, input]")
    print(f"   h0     {shape(h0)} = [layers, batch, hidden]")
    print(f"   output {shape(out)} = [seq, batch, hidden]  (top layer, every step)")
    print(f"   h_n    {shape(h_n)} = [layers, batch, hidden]  (every layer, last step)")
    # the top layer's last state is the output's last step
    same = torch.equal(out[-1], h_n[-1])
    print(f"   output[-1] == h_n[-1]: {same}")
    return out, h_n


def weight_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Print the weight shapes of RNN, LSTM and GRU side by side; returns them by class."""
    print(f"\n3. weights of one layer, input {INPUT}, hidden {HIDDEN}: gates stacked in rows")
    classes = {"RNN": recur.RNN, "LSTM": recur.LSTM, "GRU": recur.GRU}
    shapes = {name: {p: tuple(w.shape) for p, w in cls(INPUT, HIDDEN).named_parameters()}
              for name, cls in classes.items()}
    names = list(shapes["RNN"])
    print(f"   {'parameter':<13}" + "".join(f"{n:>10}" for n in classes))
    for p in names:
        row = "".join(f"{list(shapes[n][p])!s:>10}" for n in classes)
        print(f"   {p:<13}{row}")
    rows = {n: shapes[n]["weight_ih_l0"][0] for n in classes}
    print(f"   rows: LSTM/RNN = {rows['LSTM'] // rows['RNN']} (gates i, f, g, o), "
          f"GRU/RNN = {rows['GRU'] // rows['RNN']} (gates r, z, n)")
    return shapes


def main() -> None:
    torch.manual_seed(0)
    cell_by_hand()
    whole_sequence()
    weight_shapes()


if __name__ == "__main__":
    main()
