"""`veil serve` under clients that abuse the layer below the protocol: the goals of docs/SERVE.md's "What the
service enforces itself", measured on a real `veil serve` process on 127.0.0.1 with its default deadlines.

- Stalled uploads: N raw sockets each POST a head announcing the largest body, send 64 KiB of it (the HELLO,
  a chunk and most of a 65,000-byte frame; without a token, part of a HELLO) and stop: without a token, with a wrong token, and with a valid token (the server run
  with --max-sessions-per-token N and no rate limit, so that every one holds a session). The server's resident memory (VmRSS) is
  sampled every 50 ms; reported: its idle level, its peak and when every socket was closed again.
- Flood: F unauthenticated WebSocket upgrades kept open and renewed as the server closes them, while a client
  with a valid header token opens sessions one after another: seconds to READY, and whether FINAL's text is the
  test vectors'.

Not a test (no assertion): JSON in benchmarks/results/serve-abuse-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from websockets.sync.client import connect  # noqa: E402

from toolkit.files import write_json  # noqa: E402
from toolkit.paths import RESULTS_DIR  # noqa: E402
from toolkit.serve import protocol as p  # noqa: E402
from toolkit.serve.auth import hash_token  # noqa: E402

VECTORS = REPO / "testvectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
TOKEN = INDEX["test_token"]
UPGRADE = ("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def vector_frames() -> tuple[list[bytes], str]:
    session = next(s for s in INDEX["sessions"] if s["codec"] == "int8")
    return [(VECTORS / c["frame"]).read_bytes() for c in session["client"]], session["server"][-1]["fields"]["text"]


class Server:
    def __init__(self, extra: list[str]):
        env = dict(os.environ, VEIL_SERVE_TOKENS=hash_token(TOKEN), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.cli", "serve", "--checkpoint", str(REPO / "models/normalized.safetensors"),
             "--port", "0", "--threads", "1", "--log-level", "warning", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
        for line in self.proc.stdout:
            m = re.search(r"listening on (http://[\d.]+:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise SystemExit("serve_abuse: veil serve did not start")
        host, port = self.url.split("//")[1].split(":")
        self.addr = (host, int(port))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def warm_up(server: Server, frames: list[bytes]) -> None:
    for _ in range(3):
        with connect(server.url.replace("http", "ws") + "/v1/stream", proxy=None, compression=None,
                     additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            for f in frames:
                ws.send(f)
                ws.recv(timeout=30)


def stalled_uploads(server: Server, n: int, token: str | None, frames: list[bytes], max_body: int) -> dict:
    warm_up(server, frames)
    time.sleep(0.5)
    idle = server.rss_mib()
    baseline_sockets = server.metric("veil_open_sockets") - 1  # this scrape's own socket
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/octet-stream\r\n"
            f"Content-Length: {max_body}\r\n\r\n").encode()
    if token is None:  # no token anywhere: part of a HELLO, so the upload waits in the pre-auth pool
        partial = frames[0][:40]
    else:  # a HELLO, a chunk, and most of the largest frame: what a stalled upload can make the server hold
        big = 65000
        partial = frames[0] + frames[1] + p.FRAME_HEADER.pack(p.MAGIC, p.VERSION, p.MessageType.CHUNK, 0, big)
        partial += bytes(big - 5000)
    socks, answers = [], {}
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.create_connection(server.addr, timeout=10)
        try:
            s.sendall(head + partial)
        except OSError:
            pass
        socks.append(s)
    peak, closed_at = idle, None
    while time.monotonic() - t0 < 60:
        peak = max(peak, server.rss_mib())
        if closed_at is None and server.metric("veil_open_sockets") - 1 <= baseline_sockets:
            closed_at = time.monotonic() - t0
            break
        time.sleep(0.05)
    for s in socks:
        s.settimeout(0.2)
        try:
            data = s.recv(64)
            status = data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"
        except OSError:
            status = "reset"
        answers[status] = answers.get(status, 0) + 1
        s.close()
    return {"uploads": n, "token": "valid" if token == TOKEN else ("wrong" if token else "none"),
            "rss_idle_mib": round(idle, 2), "rss_peak_mib": round(peak, 2), "rss_delta_mib": round(peak - idle, 2),
            "all_sockets_closed_after_s": None if closed_at is None else round(closed_at, 2), "answers": answers}


class Flood(threading.Thread):
    """``size`` token-less upgrades kept open; each one the server closes is opened again at once."""

    def __init__(self, addr, size: int):
        super().__init__(daemon=True)
        self.addr, self.size, self.stop_flag, self.opened = addr, size, False, 0
        self.sel = selectors.DefaultSelector()

    def open_one(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(self.addr)
        self.sel.register(s, selectors.EVENT_WRITE, "connect")
        self.opened += 1

    def run(self) -> None:
        for _ in range(self.size):
            self.open_one()
        while not self.stop_flag:
            for key, _ in self.sel.select(0.1):
                s = key.fileobj
                if key.data == "connect":
                    try:
                        s.send(UPGRADE)
                        self.sel.modify(s, selectors.EVENT_READ, "read")
                        continue
                    except OSError:
                        pass
                else:
                    try:
                        if s.recv(65536):
                            continue  # an answer (101 or 503): wait for the close
                    except OSError:
                        pass
                self.sel.unregister(s)
                s.close()
                self.open_one()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def flood(server: Server, size: int, sessions: int, frames: list[bytes], text: str) -> dict:
    warm_up(server, frames)
    f = Flood(server.addr, size)
    f.start()
    time.sleep(2.0)
    preauth = server.metric('veil_connections{phase="pre_auth"}')
    sockets = server.metric("veil_open_sockets")
    ready, finals_ok = [], 0
    for _ in range(sessions):
        t0 = time.monotonic()
        with connect(server.url.replace("http", "ws") + "/v1/stream", proxy=None, compression=None, open_timeout=30,
                     additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            ws.send(frames[0])
            assert isinstance(p.decode_frame(ws.recv(timeout=30)), p.Ready)
            ready.append(time.monotonic() - t0)
            for fr in frames[1:]:
                ws.send(fr)
                reply = p.decode_frame(ws.recv(timeout=30))
            finals_ok += isinstance(reply, p.Final) and reply.text == text
        time.sleep(0.2)
    f.stop_flag = True
    f.join(10)
    return {"flood_connections": size, "flood_opened_in_all": f.opened, "pre_auth_during_flood": preauth,
            "open_sockets_during_flood": sockets, "sessions": sessions,
            "ready_s": {"max": round(max(ready), 3), "median": round(sorted(ready)[len(ready) // 2], 3)},
            "finals_right": finals_ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--flood", type=int, default=500)
    ap.add_argument("--sessions", type=int, default=10, help="valid sessions opened during the flood")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    frames, text = vector_frames()
    result = {"date": datetime.date.today().isoformat(), "load_average": os.getloadavg()[0], "stalled": [],
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    for token in (None, "wrong-token", TOKEN):
        server = Server(["--max-sessions-per-token", str(args.uploads), "--rate-limit", "0"])
        try:
            max_body = 65536 * 30  # under the server's body limit (max message bytes x (max chunks + 2))
            result["stalled"].append(stalled_uploads(server, args.uploads, token, frames, max_body))
            print(json.dumps(result["stalled"][-1]), flush=True)
        finally:
            server.stop()
    server = Server([])
    try:
        result["flood"] = flood(server, args.flood, args.sessions, frames, text)
        print(json.dumps(result["flood"]), flush=True)
    finally:
        server.stop()
    out = Path(args.out) if args.out else RESULTS_DIR / f"serve-abuse-{result['date']}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
