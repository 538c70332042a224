"""torch.nn-compatible recurrent modules built on recur's engine."""

from .cell_modules import GRUCell, LSTMCell, RNNCell, RNNCellBase
from .custom import CustomRNN
from .minrnn import MinGRU, MinLSTM
from .rnn import GRU, LSTM, RNN, RNNBase
from .variants import LayerNormGRU, LayerNormLSTM, VariantGRU, VariantLSTM, VariantRNN

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
           "CustomRNN", "VariantRNN", "VariantLSTM", "VariantGRU", "LayerNormLSTM",
           "LayerNormGRU", "MinGRU", "MinLSTM"]
