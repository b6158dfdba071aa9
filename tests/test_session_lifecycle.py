"""The phone apps' session lifecycle (toolkit/serve/lifecycle.py), the reference the Kotlin and Swift cores replay
from testvectors/lifecycle.json: the committed file is what the reference gives, and the release guarantee holds on
every event sequence up to a length that covers every reachable configuration twice over."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from toolkit.serve import lifecycle

VECTORS = Path(__file__).resolve().parents[1] / "testvectors" / "lifecycle.json"


def test_the_committed_vectors_are_what_the_reference_gives():
    assert json.loads(VECTORS.read_text()) == lifecycle.vectors()


def test_every_sequence_releases_what_it_acquired_once_microphone_first():
    """All 7^6 sequences: nothing is held in a terminal state, nothing is released that is not held, nothing is
    held twice, and where one event releases both, the microphone goes first."""
    checked = 0
    for events in itertools.product(lifecycle.EVENTS, repeat=6):
        config = ("idle", False, False)
        for e in events:
            nxt, acquired, released = lifecycle.step(config, e)
            _, mic, sock = config
            for r in acquired:
                assert not {"microphone": mic, "socket": sock}[r], (events, e)
            assert acquired == [r for r, before, after in (("microphone", mic, nxt[1]), ("socket", sock, nxt[2]))
                                if after and not before], (events, e)
            for r in released:
                if config[0] in lifecycle.TERMINAL:
                    assert (r, e) == ("socket", "connected"), (events, e)  # a late socket, never held
                else:
                    assert {"microphone": mic, "socket": sock}[r], (events, e)
            assert released == sorted(released, key=lifecycle.RESOURCES.index)
            if nxt[0] in lifecycle.TERMINAL:
                assert nxt[1:] == (False, False), (events, e)
            config = nxt
        checked += 1
    assert checked == 7 ** 6


@pytest.mark.parametrize("event", ["fail", "interrupt"])
def test_a_failure_or_interruption_in_any_live_state_releases_everything_held(event):
    for (state, mic, sock), path in lifecycle.reachable().items():
        if state in lifecycle.TERMINAL or state == "idle":
            continue
        nxt, _, released = lifecycle.step((state, mic, sock), event)
        assert nxt == ({"fail": "failed", "interrupt": "interrupted"}[event], False, False)
        assert released == [r for r, h in (("microphone", mic), ("socket", sock)) if h], path


def test_the_table_covers_every_reachable_configuration_and_event():
    v = lifecycle.vectors()
    configs = {(t["state"], t["microphone"], t["socket"]) for t in v["transitions"]}
    assert configs == set(lifecycle.reachable()) and len(configs) == 10
    assert len(v["transitions"]) == len(configs) * len(lifecycle.EVENTS)
    for t in v["transitions"]:  # each path really reaches its configuration
        states, _, config = lifecycle.run(t["path"])
        assert config == (t["state"], t["microphone"], t["socket"])
    with pytest.raises(ValueError, match="unknown lifecycle event 'pause'"):
        lifecycle.step(("idle", False, False), "pause")
