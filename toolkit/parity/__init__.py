"""Parity: does an exported prefix, run in its real phone runtime, compute what the float torch prefix computes?

``check.run_parity`` is the recipe (``veil parity EXPORT_DIR``, and ``export-prefix`` after every export);
``metrics`` (embedding and cloud-side numbers), ``gates`` (per-recipe thresholds), ``coreml_offline``
(what Linux can check of a Core ML package), ``localize`` (which layer opens the gap), ``bundled``
(ExecuTorch BundledProgram for on-phone checks) and ``report`` (Markdown/HTML from parity.json) are its parts.
"""
