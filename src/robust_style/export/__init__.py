"""ONNX (and Triton model repository) export of style networks, and its verification."""

from robust_style.export.onnx_export import ServingWrapper, export_onnx

__all__ = ["ServingWrapper", "export_onnx"]
