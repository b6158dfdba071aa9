"""The research record's recipes, beside the product (``toolkit/``, ``export/``): the GRL sweep (``veil sweep``),
the bottleneck frontier (``veil frontier``), the privacy attempts log (``veil attempts``), the cut-point sweep
(``veil bench --sweep-split``), the benchmark and service-load drivers (``python -m experiments.run_bench``,
``python -m experiments.serve_load``) and the readers of report formats nothing writes any more.

They share one runner (``runner.py``: plan -> train -> cached evaluate -> render) and one evaluator
(``evaluate.py``). They use ``toolkit``; ``toolkit`` never imports them (tests/test_imports.py): the ``veil``
command registry names their commands by string.
"""
