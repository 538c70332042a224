"""recur: recurrent neural networks for PyTorch."""
