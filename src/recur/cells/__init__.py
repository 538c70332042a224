"""Cell declarations: the math of each recurrent cell, written once."""

from .base import Cell, States, UpdateFn
from .declare import DeclaredCell, Param, check_cell, declare
from .gru import GRU
from .layernorm import LAYERNORM_GRU, LAYERNORM_LSTM
from .lstm import LSTM
from .registry import lookup, register, registered
from .rnn import RNN_RELU, RNN_TANH

BY_MODE = {"RNN_TANH": RNN_TANH, "RNN_RELU": RNN_RELU, "LSTM": LSTM, "GRU": GRU}
for _cell in (RNN_TANH, RNN_RELU, LSTM, GRU, LAYERNORM_LSTM, LAYERNORM_GRU):
    register(_cell, builtin=True)

__all__ = ["Cell", "States", "UpdateFn", "RNN_TANH", "RNN_RELU", "LSTM", "GRU", "BY_MODE",
           "declare", "Param", "DeclaredCell", "check_cell", "LAYERNORM_LSTM", "LAYERNORM_GRU",
           "lookup", "register", "registered"]
