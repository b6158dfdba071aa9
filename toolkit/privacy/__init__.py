"""The privacy job: `veil privacy` (speaker leakage per layer: the attacker suite, every attacker trained on what it
attacks, the strongest of each task named). The research recipes built on it (the GRL sweep, the bottleneck
frontier, the attempts log) live in ``experiments/``.

Modules: ``leakage`` (the recipe, its settings, the attack material, attacking a checkpoint layer or an export),
``suite`` (the attackers by name, the strongest, the spread over seeds), the attackers' parts (``attackers``:
pooled mean+std and the x-vector; ``statistics``: higher-order and temporal frame statistics; ``scoring``:
classifiers, LDA, PLDA, EER; ``framewise``: the frame-level network; ``ecapa``: the ECAPA-style attacker),
``embeddings`` and ``artifact`` (what is attacked), ``report`` (JSON, Markdown, plot, README table).
"""
