"""recur: recurrent neural networks for PyTorch.

Drop-ins for torch.nn's ``RNN``, ``LSTM``, ``GRU`` and their cells, built on one cell engine
(``recur.ops.scan``) with several backends (a reference loop, PyTorch's fused kernels, fused
Triton kernels).
"""

from . import cells, ops
from .export import export_onnx
from .nn import (
                 GRU,
                 LSTM,
                 RNN,
                 CustomRNN,
                 GRUCell,
                 LayerNormGRU,
                 LayerNormLSTM,
                 LSTMCell,
                 MinGRU,
                 MinLSTM,
                 RNNBase,
                 RNNCell,
                 RNNCellBase,
                 VariantGRU,
                 VariantLSTM,
                 VariantRNN,
)
from .nn.explain import explain
from .ops import scan

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNNCellBase",
           "scan", "export_onnx", "cells", "ops", "__version__",
           "CustomRNN", "VariantRNN", "VariantLSTM", "VariantGRU", "LayerNormLSTM",
           "LayerNormGRU", "MinGRU", "MinLSTM", "explain"]
