"""The bench job: `veil bench` (every artifact and two baselines measured side by side, on this host or a phone).
The cut-point sweep (`veil bench --sweep-split`) is a research recipe: ``experiments/cut_points.py``."""
