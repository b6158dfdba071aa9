"""`veil serve` (the suffix service), `veil stream` (the reference client) and `veil protocol vectors`."""
from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
from pathlib import Path

import torch

import export as backends
from toolkit.audio import load_audio
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest
from toolkit.files import write_json
from toolkit.model.checkpoint import read_config
from toolkit.paths import DEFAULT_MODEL, NORMALIZED, TESTVECTORS_DIR, default_export_dir, display_path
from toolkit.serve.admission import AdmissionLimits
from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TOKENS_ENV, TokenStore, hash_token, new_token
from toolkit.serve.batcher import BatchConfig
from toolkit.serve.connection import ConnectionLimits
from toolkit.serve.client import PrefixRunner, read_token, stream_utterance
from toolkit.serve.server import Listen, serve_forever
from toolkit.serve.session import SessionLimits
from toolkit.serve.suffix import ServedSuffix
from toolkit.serve.vectors import write_vectors

DEFAULT_SERVER = "http://127.0.0.1:8765"
TOKEN_ENV = "VEIL_TOKEN"


def add_parser(sub) -> None:
    _add_serve_parser(sub)
    _add_stream_parser(sub)
    _add_vectors_parser(sub)


def _add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve suffixes over the streaming protocol (WebSocket + HTTP, batched)",
                       description="The cloud half: sessions bound to a prefix identity, dynamic batching across "
                                   "sessions, bearer-token auth, limits, /metrics. Protocol: docs/PROTOCOL.md; "
                                   "operations: docs/SERVE.md.")
    m = s.add_argument_group("models")
    m.add_argument("--checkpoint", action="append", default=[], metavar="PATH[:K]",
                   help="serve this checkpoint's suffix after block K (default K: its split layer); repeatable. "
                        "Default: the default model, models/k6-d16-n0.5.safetensors")
    m.add_argument("--export", action="append", default=[], metavar="EXPORT_DIR",
                   help="serve the suffix matching this export's manifest.json (its checkpoint and split layer)")
    n = s.add_argument_group("network")
    n.add_argument("--host", default="127.0.0.1")
    n.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    n.add_argument("--tls-cert", help="PEM certificate (chain): serve https/wss itself")
    n.add_argument("--tls-key", help="PEM private key of --tls-cert")
    a = s.add_argument_group("auth")
    a.add_argument("--token-file", help="bearer token hashes, one 'sha256:<hex>' per line "
                                        "(also read from $VEIL_SERVE_TOKENS)")
    a.add_argument("--new-token", metavar="FILE", help="make a random token, append its hash to FILE, print the "
                                                       "token once, and exit")
    a.add_argument("--insecure-no-auth", action="store_true",
                   help="accept every client without a token: LOCAL DEMOS ONLY")
    b = s.add_argument_group("batching")
    b.add_argument("--max-batch", type=int, default=32, help="utterances per suffix call (1: no batching)")
    b.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    b.add_argument("--max-batch-frames", type=int, default=16000, help="padded frames per suffix call")
    b.add_argument("--threads", type=int, default=0, help="torch threads for the suffix (0: torch's default)")
    lim = s.add_argument_group("limits")
    lim.add_argument("--max-message-bytes", type=int, default=65536,
                     help="largest frame; checked from the WebSocket frame header before the body is read")
    lim.add_argument("--max-utterance-s", type=float, default=60.0, help="longest utterance (caps the final's cost)")
    lim.add_argument("--partial-window-s", type=float, default=16.0, help="partials decode at most this much audio")
    lim.add_argument("--idle-timeout-s", type=float, default=30.0, help="end a session silent for this long")
    lim.add_argument("--max-sessions", type=int, default=256, help="open sessions in all (503 / 4503 beyond)")
    lim.add_argument("--max-sessions-per-token", type=int, default=32, help="open sessions per token (4430)")
    lim.add_argument("--rate-limit", type=float, default=50.0, help="messages per second per token (0: none)")
    lim.add_argument("--rate-burst", type=float, default=100.0, help="burst of --rate-limit")
    lim.add_argument("--shutdown-grace-s", type=float, default=15.0,
                     help="on SIGTERM, let open sessions finish this long, then end them (4502)")
    _add_deadline_flags(s)
    r = s.add_argument_group("scale-out")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: the suffix as an autoscaling Ray Serve deployment behind the same gateway "
                        "(needs `pip install .[ray]`; Ray binds more ports than --port: docs/SERVE.md)")
    r.add_argument("--max-replicas", type=int, default=4, help="--engine ray: autoscaling limit of suffix replicas")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=run)


def _add_deadline_flags(s) -> None:
    dl = s.add_argument_group("connection deadlines (below the protocol; docs/SERVE.md)")
    dl.add_argument("--head-timeout-s", type=float, default=5.0,
                    help="the request line and headers must arrive within this (408, or a plain close if nothing "
                         "came)")
    dl.add_argument("--body-timeout-s", type=float, default=10.0,
                    help="a POST body must arrive within this, plus 1 s per --min-body-rate bytes received (4408)")
    dl.add_argument("--min-body-rate", type=float, default=16384.0,
                    help="bytes per second that extend --body-timeout-s (0: a fixed body deadline)")
    dl.add_argument("--hello-timeout-s", type=float, default=5.0,
                    help="the HELLO must arrive within this after the upgrade (or start the POST body) (4408)")
    dl.add_argument("--max-preauth", type=int, default=32,
                    help="connections without an Authorization header waiting for their HELLO token (503 / 4503 "
                         "beyond); they hold no session slot")


def _add_stream_parser(sub) -> None:
    st = sub.add_parser("stream", help="stream audio through an exported prefix to a `veil serve` (the reference "
                                       "client)")
    st.add_argument("audio", nargs="+")
    st.add_argument("--server", default=DEFAULT_SERVER, help=f"http(s)://HOST:PORT or ws(s)://... (default "
                                                             f"{DEFAULT_SERVER})")
    st.add_argument("--export", default=None, metavar="EXPORT_DIR",
                    help="export folder (manifest.json + artifacts); default: export-prefix's folder for the "
                         "shipped model, exports/k6-d16-n0.5-k6")
    st.add_argument("--backend", default="executorch", choices=list(backends.BACKENDS),
                    help="which of the export's artifacts runs the prefix (coreml: macOS only)")
    st.add_argument("--codec", default=None, choices=["int8", "fp16", "fp32", "vq"],
                    help="payload codec (default: the export's, from its manifest: vq for a codebook bottleneck, "
                         "else int8); a vq export sends vq only")
    st.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    st.add_argument("--token-file", help="read the bearer token from this file")
    st.add_argument("--token-in-hello", action="store_true", help="send the token in HELLO, not in a header")
    st.add_argument("--http", action="store_true", help="unary HTTP POST instead of WebSocket streaming")
    st.add_argument("--ca-cert", help="trust this certificate (PEM) for https/wss, e.g. a self-signed one")
    st.add_argument("--realtime", action="store_true", help="send each chunk when its 2 s would have been recorded")
    st.add_argument("--json", help="also write the results (texts, timings) to this JSON file")
    st.set_defaults(func=run)


def _add_vectors_parser(sub) -> None:
    pr = sub.add_parser("protocol", help="the streaming protocol: cross-language test vectors")
    psub = pr.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    v = psub.add_parser("vectors", help="write the test vectors of docs/PROTOCOL.md (frames, payloads, a real session)")
    v.add_argument("--out", default=str(TESTVECTORS_DIR))
    v.add_argument("--checkpoint", default=str(NORMALIZED),
                   help="the model whose session the vectors record (default models/normalized.safetensors: a "
                        "noise-free payload, so every language can replay it)")
    v.add_argument("--audio", default=None,
                   help="the PCM snippet (an audio file or raw .f32); default: the one committed in --out")
    v.add_argument("--embeddings-from", default=None, metavar="VECTORS_DIR",
                   help="reuse that vectors folder's prefix outputs instead of computing them: their last bits "
                        "differ between CPUs, so a protocol change regenerated elsewhere keeps every other byte")
    v.set_defaults(func=run)


def run(args) -> int:
    return {"serve": run_serve, "stream": run_stream, "protocol": run_vectors}[args.command](args)


# ---- veil serve ------------------------------------------------------------------------------------------------

def parse_checkpoint_arg(arg: str) -> tuple[Path, int | None]:
    path, sep, k = arg.rpartition(":")
    if sep and k.isdigit() and path:
        return Path(path), int(k)
    return Path(arg), None


def load_models(args) -> list[ServedSuffix]:
    """The suffixes to serve: each --checkpoint, and the checkpoint of each --export (its manifest read and
    checked by ExportManifest.read, the checkpoint checked to be the exported one); default the shipped model."""
    models = [ServedSuffix.load(*parse_checkpoint_arg(c)) for c in args.checkpoint]
    models += [ServedSuffix.for_export(ExportManifest.read(export_dir)) for export_dir in args.export]
    if not models:
        models = [ServedSuffix.load(DEFAULT_MODEL)]
    seen = {}
    for m in models:
        if m.identity in seen:
            raise VeilError(f"prefix {m.identity.key} is given twice ({seen[m.identity]} and {m.checkpoint})")
        seen[m.identity] = m.checkpoint
    return models


def make_token_file(path: str) -> int:
    token = new_token()
    line = f"{hash_token(token)}  # made {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line)
    print(token)
    print(f"appended its hash to {path}; the token itself is not stored anywhere: keep it", file=sys.stderr)
    return 0


def run_serve(args) -> int:
    if args.new_token:
        return make_token_file(args.new_token)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise VeilError("--tls-cert and --tls-key go together")
    for f in (args.tls_cert, args.tls_key):
        if f and not Path(f).is_file():
            raise VeilError(f"{f}: TLS file not found")
    positive = {"--max-batch": args.max_batch, "--max-message-bytes": args.max_message_bytes,
                "--max-sessions": args.max_sessions, "--max-sessions-per-token": args.max_sessions_per_token,
                "--max-utterance-s": args.max_utterance_s, "--partial-window-s": args.partial_window_s,
                "--idle-timeout-s": args.idle_timeout_s, "--max-batch-frames": args.max_batch_frames,
                "--head-timeout-s": args.head_timeout_s, "--body-timeout-s": args.body_timeout_s,
                "--hello-timeout-s": args.hello_timeout_s, "--max-preauth": args.max_preauth}
    for flag, value in positive.items():
        if value <= 0:
            raise VeilError(f"{flag} must be positive, got {value}")
    if args.min_body_rate < 0:
        raise VeilError(f"--min-body-rate must be 0 or more, got {args.min_body_rate}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("veil.serve").setLevel(args.log_level.upper())
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its INFO lines name client addresses
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.insecure_no_auth:
        tokens, token_note = None, "NONE (--insecure-no-auth)"
        print("veil serve: WARNING: --insecure-no-auth: anyone who can reach this port gets transcripts. Local "
              "demos only; never expose this server.", file=sys.stderr)
    else:
        tokens = TokenStore.load(args.token_file, os.environ.get(TOKENS_ENV))
        token_note = f"{len(tokens)} token hash(es)"
        if not len(tokens):
            token = new_token()
            tokens = TokenStore.of_tokens([token])
            token_note = "one token for this run only (no --token-file or $VEIL_SERVE_TOKENS)"
            print(f"veil serve: token for this run: {token}", flush=True)
    if not args.tls_cert and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"veil serve: WARNING: plain HTTP on {args.host}: tokens and embeddings travel unencrypted; use "
              f"--tls-cert/--tls-key or a TLS reverse proxy (docs/SERVE.md)", file=sys.stderr)

    if args.engine == "ray":
        return run_ray(args, tokens, token_note)
    models = load_models(args)
    config = ServiceConfig(
        session=SessionLimits(args.max_message_bytes, args.max_utterance_s, args.partial_window_s, args.idle_timeout_s),
        admission=AdmissionLimits(args.max_sessions, args.max_sessions_per_token, args.rate_limit, args.rate_burst,
                                  args.max_preauth),
        batch=BatchConfig(args.max_batch, args.max_wait_ms, args.max_batch_frames),
        shutdown_grace_seconds=args.shutdown_grace_s,
        connection=ConnectionLimits(args.head_timeout_s, args.body_timeout_s, args.min_body_rate,
                                    args.hello_timeout_s))
    service = Service(models, tokens, config)
    listen = Listen(args.host, args.port, args.tls_cert, args.tls_key)

    def ready(url: str) -> None:
        ws = url.replace("http", "ws", 1)
        print(f"veil serve: listening on {url} (WebSocket {ws}/v1/stream, POST {url}/v1/transcribe, {url}/metrics)",
              flush=True)
        for m in models:
            print(f"veil serve: prefix {m.identity.key} = {m.checkpoint.name} after block {m.identity.split_layer} "
                  f"(codecs {', '.join(m.codecs)})", flush=True)
        print(f"veil serve: auth: {token_note}; batching: up to {args.max_batch} per call, {args.max_wait_ms:g} ms "
              f"wait", flush=True)

    try:
        serve_forever(service, listen, ready)
    except OSError as exc:
        raise VeilError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    return 0


def run_ray(args, tokens, token_note: str) -> int:
    try:  # Ray Serve is an optional extra (~500 MB, `pip install '.[ray]'`): imported only for --engine ray
        import ray
        from ray import serve

        from toolkit.serve import ray_app
    except ImportError:
        raise VeilError("--engine ray needs Ray Serve: pip install '.[ray]' (ray[serve]==2.60.0)") from None
    if len(args.checkpoint) + len(args.export) > 1:
        raise VeilError("--engine ray serves one model; give one --checkpoint or --export")
    if args.tls_cert:
        raise VeilError("--engine ray: terminate TLS at the reverse proxy in front of Ray Serve (docs/SERVE.md)")
    if args.port == 0:
        raise VeilError("--engine ray needs a fixed --port (Ray Serve's proxy binds it)")
    checkpoint, k = DEFAULT_MODEL, None
    if args.checkpoint:
        checkpoint, k = parse_checkpoint_arg(args.checkpoint[0])
    elif args.export:
        served = load_models(args)[0]
        checkpoint, k = served.checkpoint, served.identity.split_layer
    options = {"checkpoint": str(checkpoint), "split_layer": k, "max_batch": args.max_batch,
               "max_wait_ms": args.max_wait_ms, "max_replicas": args.max_replicas, "threads": args.threads or 1,
               "max_message_bytes": args.max_message_bytes, "max_utterance_s": args.max_utterance_s,
               "partial_window_s": args.partial_window_s, "idle_timeout_s": args.idle_timeout_s,
               "max_sessions": args.max_sessions, "max_sessions_per_token": args.max_sessions_per_token,
               "rate_limit": args.rate_limit, "rate_burst": args.rate_burst,
               "insecure_no_auth": tokens is None, "token_hashes": None if tokens is None else tokens.hex_digests()}
    exposed = ray_app.run_local(options, args.host, args.port)  # refuses loopback with other interfaces in reach
    if exposed:
        print(f"veil serve: warning: Ray binds its cluster ports (GCS, raylets, object store) on {', '.join(exposed)} "
              f"as well as --host {args.host}: keep this host on a private network (docs/SERVE.md)",
              file=sys.stderr, flush=True)
    url = f"http://{args.host}:{args.port}"
    print(f"veil serve: listening on {url} (Ray Serve: gateway + autoscaling suffix replicas, 1..{args.max_replicas})",
          flush=True)
    print(f"veil serve: auth: {token_note}; batching: @serve.batch up to {args.max_batch}, {args.max_wait_ms:g} ms",
          flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


# ---- veil stream -------------------------------------------------------------------------------------------------

def default_export() -> Path:
    """Where `export-prefix` writes the shipped model's prefix by default."""
    return default_export_dir(DEFAULT_MODEL, int(read_config(DEFAULT_MODEL)["model"]["split_layer"]))


def run_stream(args) -> int:
    token = read_token(args.token or os.environ.get(TOKEN_ENV), args.token_file)
    export_dir = Path(args.export) if args.export else default_export()
    manifest = ExportManifest.read(export_dir, only=[args.backend])
    prefix = PrefixRunner(manifest, args.backend)
    pcms = [(a, load_audio(a)) for a in args.audio]  # every file is checked before the first session
    results = []
    for audio, pcm in pcms:
        r = stream_utterance(args.server, manifest, prefix, pcm, args.codec, token, audio, args.ca_cert,
                             args.token_in_hello, "http" if args.http else "ws", args.realtime)
        print(f"{audio}: {r.seconds:.2f} s, {len(r.chunks)} chunks, {prefix.name} prefix, {r.codec}, "
              f"{'HTTP' if args.http else 'WebSocket'}")
        for c in r.chunks:
            line = f"  chunk {c.seq}: prefix {c.prefix_ms:.1f} ms, {c.payload_bytes} B"
            if not args.http:
                line += f", partial after {c.round_trip_ms:.1f} ms | {c.partial}"
            print(line)
        print(f"  final after {r.final_ms:.1f} ms (total {r.total_ms:.0f} ms) | {r.final}")
        results.append(r.to_json())
    if args.json:
        write_json(args.json, {"server": args.server, "export": display_path(export_dir), "results": results})
    return 0


# ---- veil protocol vectors ----------------------------------------------------------------------------------------

def run_vectors(args) -> int:
    index = write_vectors(args.out, args.checkpoint, args.audio, args.embeddings_from)
    files = sum(1 for f in Path(args.out).rglob("*") if f.is_file())
    print(f"wrote {args.out}/ ({files} files; {len(index['scenarios'])} scenarios, "
          f"{len(index['frames']['errors'])} malformed frames, {len(index['payload']['errors']['cases'])} "
          f"malformed payloads, sessions: {', '.join(s['codec'] for s in index['sessions'])})")
    return 0
