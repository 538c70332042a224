"""torch.nn-compatible recurrent modules built on recur's engine."""

from .cell_modules import GRUCell, LSTMCell, RNNCell, RNNCellBase
from .rnn import GRU, LSTM, RNN, RNNBase

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
