"""recur: recurrent neural networks for PyTorch.

Drop-ins for torch.nn's ``RNN``, ``LSTM``, ``GRU`` and their cells, built on one cell engine
(``recur.ops.scan``) with several backends (a reference loop, PyTorch's fused kernels, fused
Triton kernels).
"""

from . import cells, ops
from .nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .ops import scan

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNNCellBase",
           "scan", "cells", "ops", "__version__"]
