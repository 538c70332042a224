"""Export recur's layers to other toolchains: ONNX (``export_onnx``)."""

from .onnx import build_onnx, check_exportable, export_onnx

__all__ = ["build_onnx", "check_exportable", "export_onnx"]
