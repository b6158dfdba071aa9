"""The bench job: `veil bench` (every artifact and two baselines measured side by side) and the cut-point
sweep (`veil bench --sweep-split`)."""
