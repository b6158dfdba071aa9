"""The Ray Serve scale-out (toolkit/serve/ray_app.py), for real: Ray started inside a network namespace whose
only interface is `lo` (`unshare --net`; Ray binds more than its HTTP port, and nothing may listen on this
machine's external interface), the gateway and an autoscaling suffix deployment, sessions from the committed
vectors over WebSocket and HTTP, concurrent sessions through `@serve.batch`.

Ray is an optional extra for users (`pip install '.[ray]'`, ~500 MB) that scripts/setup.sh installs, so `make
test` runs this. Where it or `unshare` is missing (a hand-made environment, no root), the test is skipped with
the reason, which pytest's -ra summary prints: it never passes without running."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.serial  # Ray starts a cluster of processes; beside another pytest worker its proxy can
                                 # miss its start-up deadline on two cores

ROOT = Path(__file__).resolve().parent.parent
PORT = 8765  # inside the namespace: nothing else is there


def ray_available() -> str | None:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        return "Ray Serve is not installed (pip install '.[ray]'): the Ray scale-out was NOT tested"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "needs root and `unshare` for a loopback-only network namespace: the Ray scale-out was NOT tested"
    return None


def test_ray_serve_deployment_serves_sessions_inside_a_loopback_only_namespace():
    reason = ray_available()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(["unshare", "--net", "--", "bash", "-c",
                          f"ip link set lo up && exec {sys.executable} -m tests.test_serve_ray"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"rc={run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["interfaces"] == ["lo"]
    assert result["ws_texts"] == result["expected_texts"] and result["ws_close"] == 1000
    assert result["http_text"] == result["expected_texts"][-1]
    assert result["concurrent_ok"] == result["concurrent"] and result["wrong_prefix_code"] == 4404
    assert result["no_token_status"] == 401


def test_ray_engine_on_loopback_is_refused_while_another_interface_is_in_reach():
    """`veil serve --engine ray --host 127.0.0.1` in a namespace with `lo` and a bridge interface: one line naming
    the interface, exit 2, before Ray starts (nothing ever reaches this machine's network)."""
    reason = ray_available()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run(["unshare", "--net", "--", "bash", "-c",
                          "ip link set lo up && ip link add veil-br0 type bridge && "
                          f"exec {sys.executable} -m toolkit.cli serve --engine ray --host 127.0.0.1 --port {PORT}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, f"rc={run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    err = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "veil-br0" in err[0] and "network namespace whose only interface is lo" in err[0]


def inside_namespace() -> dict:
    """Runs in the namespace: start Ray + the app, run sessions, report."""
    import socket
    import threading
    import urllib.request

    from ray import serve
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    from toolkit.serve import protocol as p
    from toolkit.serve import ray_app
    from toolkit.serve.auth import TokenStore
    from toolkit.serve.client import transcribe_http

    interfaces = sorted(name for _, name in socket.if_nameindex())
    assert interfaces == ["lo"], interfaces  # never start Ray with another interface in reach
    index = json.loads((ROOT / "testvectors" / "index.json").read_text())
    token = index["test_token"]
    session = next(s for s in index["sessions"] if s["codec"] == "int8")
    frames = [(ROOT / "testvectors" / c["frame"]).read_bytes() for c in session["client"]]
    expected = [r["fields"].get("text") for r in session["server"]][1:]
    ray_app.run_local({"checkpoint": str(ROOT / "models" / "normalized.safetensors"), "max_batch": 8,
                       "max_wait_ms": 20, "max_replicas": 2,
                       "token_hashes": TokenStore.of_tokens([token]).hex_digests()}, "127.0.0.1", PORT, num_cpus=2)
    url = f"ws://127.0.0.1:{PORT}/v1/stream"

    def session_texts(fs):
        texts, close = [], None
        with connect(url, proxy=None, compression=None, open_timeout=60) as ws:
            try:
                for f in fs:
                    ws.send(f)
                    m = p.decode_frame(ws.recv(timeout=120))
                    texts.append(getattr(m, "text", None) if not isinstance(m, p.Error) else m.code)
                ws.recv(timeout=30)
            except ConnectionClosed as exc:
                close = exc.rcvd.code if exc.rcvd else None
        return texts, close

    try:
        ws_texts, ws_close = session_texts(frames)
        http_text = transcribe_http(f"http://127.0.0.1:{PORT}", frames, None).text
        results = []
        threads = [threading.Thread(target=lambda: results.append(session_texts(frames)[0])) for _ in range(6)]
        [t.start() for t in threads]
        [t.join(300) for t in threads]
        wrong = p.encode_frame(p.Hello(bytes(32), 4, "int8", 16000, 32000, 640, 144, token))
        wrong_texts, _ = session_texts([wrong])
        try:
            connect(url, proxy=None, additional_headers={"Authorization": "Bearer nope"}, open_timeout=60).close()
            no_token_status = 101
        except InvalidStatus as exc:
            no_token_status = exc.response.status_code
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=30).read())
    finally:
        serve.shutdown()
    return {"interfaces": interfaces, "ws_texts": ws_texts[1:], "ws_close": ws_close, "expected_texts": expected,
            "http_text": http_text, "concurrent": 6, "concurrent_ok": sum(r[1:] == expected for r in results),
            "wrong_prefix_code": wrong_texts[-1], "no_token_status": no_token_status, "health": health}


if __name__ == "__main__":
    print("RESULT " + json.dumps(inside_namespace()), flush=True)
