"""`veil train`: CTC (+ speaker-adversarial GRL) training, resumable, single process or torchrun (DDP).

Its options are the fields of TrainConfig and ModelConfig (``toolkit/training/options.py``); ``--config
RUN.json`` reads them from a file, flags override."""
from __future__ import annotations

import json
import shlex
import sys

from toolkit.training.loop import train
from toolkit.training.options import add_train_arguments, train_config


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a conformer-CTC model, optionally speaker-adversarial")
    add_train_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    res = train(train_config(args), command="veil " + shlex.join(sys.argv[1:]))
    if res:
        print(json.dumps(res))
    return 0
