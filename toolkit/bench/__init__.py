"""Benchmarks: `veil bench` measures every exported artifact beside torch eager and ONNX Runtime baselines,
the machine's matmul ceiling, the payload codec, a cut-point sweep and phones (see cli.py)."""
