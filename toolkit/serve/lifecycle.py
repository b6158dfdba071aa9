"""The phone apps' streaming-session lifecycle, the reference the Kotlin and Swift cores implement
(android_demo/core SessionLifecycle.kt, ios_demo/VeilCore SessionLifecycle.swift).

A session holds two things the phone must give back: the microphone (from ``start``) and the WebSocket (from
``connected``). Seven states: ``idle``, ``starting`` (microphone open, model loading, connecting), ``running``
(READY received, chunks streaming), ``stopping`` (Stop pressed: microphone released, the backlog and END go out,
FINAL awaited), and three terminal ones: ``finished`` (FINAL), ``failed`` (any error: export, runtime, network,
server refusal, microphone) and ``interrupted`` (the system took the microphone, or the screen went away).

The guarantee both cores are tested for: in a terminal state nothing is held, each resource is released exactly
once per acquisition, the microphone before the socket, and a socket that opens after the session ended (the
pipeline thread raced a cancel) is released at once. Events that do not apply to a state are ignored.

``vectors()`` is ``testvectors/lifecycle.json``: every transition of every reachable configuration (state and
what is held), each with the shortest event path from ``idle`` that reaches it, and named scenarios of the apps'
failure paths.
"""
from __future__ import annotations

from collections import deque

FORMAT = "veil-lifecycle/1"
STATES = ("idle", "starting", "running", "stopping", "finished", "failed", "interrupted")
TERMINAL = ("finished", "failed", "interrupted")
EVENTS = ("start", "connected", "ready", "stop", "final", "fail", "interrupt")
RESOURCES = ("microphone", "socket")

Config = tuple[str, bool, bool]  # state, microphone held, socket held


def step(config: Config, event: str) -> tuple[Config, list[str], list[str]]:
    """(next configuration, resources acquired, resources released in order) for one event."""
    state, mic, sock = config
    if event not in EVENTS:
        raise ValueError(f"unknown lifecycle event {event!r}")
    if state in TERMINAL:
        if event == "connected":  # a socket opened after the end: give it back at once
            return config, [], ["socket"]
        return config, [], []
    if event in ("final", "fail", "interrupt"):
        if state == "idle" and event == "final":
            return config, [], []
        released = [r for r, held in (("microphone", mic), ("socket", sock)) if held]
        return ({"final": "finished", "fail": "failed", "interrupt": "interrupted"}[event], False, False), [], released
    if event == "start":
        return (("starting", True, sock), ["microphone"], []) if state == "idle" else (config, [], [])
    if state == "idle":
        return config, [], []
    if event == "connected":
        return ((state, mic, True), ["socket"], []) if not sock else (config, [], [])
    if event == "ready":
        return (("running", mic, sock), [], []) if state == "starting" else (config, [], [])
    if event == "stop":
        if state in ("starting", "running"):
            return ("stopping", False, sock), [], ["microphone"] if mic else []
        return config, [], []
    raise AssertionError(f"unhandled {config} {event}")


def run(events: list[str]) -> tuple[list[str], list[list[str]], Config]:
    """States after each event, releases per event, and the final configuration, from idle."""
    config: Config = ("idle", False, False)
    states, released = [], []
    for e in events:
        config, _, rel = step(config, e)
        states.append(config[0])
        released.append(rel)
    return states, released, config


def reachable() -> dict[Config, list[str]]:
    """Every reachable configuration with its shortest event path from idle (events tried in EVENTS order)."""
    start: Config = ("idle", False, False)
    paths = {start: []}
    queue = deque([start])
    while queue:
        c = queue.popleft()
        for e in EVENTS:
            n, _, _ = step(c, e)
            if n not in paths:
                paths[n] = paths[c] + [e]
                queue.append(n)
    return paths


# The apps' paths, by name: what happens on the phone -> the events the session feeds its lifecycle.
SCENARIOS = {
    "stop then final": ["start", "connected", "ready", "stop", "final"],
    "stop before the model loaded": ["start", "stop", "connected", "ready", "final"],
    "export verify or model load fails": ["start", "fail"],
    "a socket opens after the session failed": ["start", "fail", "connected"],
    "server refuses the upgrade": ["start", "connected", "fail"],
    "microphone read error while running": ["start", "connected", "ready", "fail"],
    "connection lost while waiting for final": ["start", "connected", "ready", "stop", "fail"],
    "screen went away before connecting": ["start", "interrupt", "connected"],
    "phone call while running": ["start", "connected", "ready", "interrupt", "stop", "final"],
    "stop pressed twice": ["start", "connected", "ready", "stop", "stop", "final"],
    "events after the end are ignored": ["start", "connected", "ready", "stop", "final", "fail", "interrupt", "start"],
}


def vectors() -> dict:
    transitions = []
    for config, path in reachable().items():
        for e in EVENTS:
            n, acquired, released = step(config, e)
            transitions.append({"path": path, "state": config[0], "microphone": config[1], "socket": config[2],
                                "event": e, "next": n[0], "acquire": acquired, "release": released})
    scenarios = []
    for name, events in SCENARIOS.items():
        states, released, (state, mic, sock) = run(events)
        scenarios.append({"name": name, "events": events, "states": states, "release": released,
                          "held": [r for r, h in (("microphone", mic), ("socket", sock)) if h]})
    return {"format": FORMAT, "generated_by": "veil protocol vectors (toolkit/serve/lifecycle.py)",
            "states": list(STATES), "terminal": list(TERMINAL), "events": list(EVENTS),
            "resources": list(RESOURCES), "transitions": transitions, "scenarios": scenarios}
