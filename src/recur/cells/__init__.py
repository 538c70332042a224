"""Cell declarations: the math of each recurrent cell, written once."""

from .base import Cell, States, UpdateFn
from .gru import GRU
from .lstm import LSTM
from .rnn import RNN_RELU, RNN_TANH

BY_MODE = {"RNN_TANH": RNN_TANH, "RNN_RELU": RNN_RELU, "LSTM": LSTM, "GRU": GRU}

__all__ = ["Cell", "States", "UpdateFn", "RNN_TANH", "RNN_RELU", "LSTM", "GRU", "BY_MODE"]
