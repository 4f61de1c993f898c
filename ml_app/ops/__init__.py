"""Operator commands: `python -m ml_app models ...` (no Flask, no ONNX Runtime)."""
