"""End to end, as deployed: the prefix of the noise-free shipped model (models/normalized.safetensors) exported
to ExecuTorch (the real export-prefix recipe) and run chunk by chunk in the ExecuTorch runtime by the reference
client, streaming real corpus audio to a live `veil serve`; the server's transcripts must equal the local float
pipeline's on the artifact's own embeddings, for every codec and both transports. The CLI test starts
`veil serve` and `veil stream` as separate processes and greps the server's logs for anything a client sent."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit import payload
from toolkit.audio import load_audio
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.ctc import greedy_ids
from toolkit.exporting.manifest import ExportManifest
from toolkit.exporting.prefix_export import ExportRequest, export_prefix
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
from toolkit.parity import metrics
from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TokenStore
from toolkit.serve.client import PrefixRunner, stream_utterance
from toolkit.serve.server import ServerThread
from toolkit.serve.suffix import ServedSuffix

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "normalized.safetensors"
TOKEN = "e2e-token"


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory, tiny_corpus):
    """export-prefix of the shipped model, ExecuTorch fp32 only (the LiteRT half of the android target would
    double the test's export time; `veil stream --backend litert` runs the same client code)."""
    out = tmp_path_factory.mktemp("export") / "normalized-k4"
    export_prefix(ExportRequest(checkpoint=SHIPPED, target="executorch", recipes=["fp32"], out=out,
                                corpus=tiny_corpus))
    return out


@pytest.fixture(scope="module")
def corpus_audio(tiny_corpus):
    utts = sorted(read_librispeech(tiny_corpus / "test", probe_lengths=False), key=lambda u: u.utt_id)[:3]
    return [(str(u.path), load_audio(u.path)) for u in utts]


@pytest.fixture(scope="module")
def local_pipeline():
    """Greedy CTC text of the float suffix on given embeddings: the parity checker's decode, not the server."""
    model, config = load_checkpoint(SHIPPED)
    _, suffix = split(model)
    suffix.eval()
    tokenizer = tokenizer_from(config)
    return lambda emb: tokenizer.decode(greedy_ids(metrics.decode(suffix, [emb])[0]))


def test_every_codec_and_transport_gives_the_local_float_pipelines_transcript(shipped_export, corpus_audio,
                                                                             local_pipeline):
    manifest = ExportManifest.read(shipped_export, only=["executorch"])
    prefix = PrefixRunner(manifest, "executorch")
    served = ServedSuffix.for_export(manifest)  # what `veil serve --export` serves: the export's own checkpoint
    assert served.identity == manifest.prefix_identity == ServedSuffix.load(SHIPPED).identity
    assert served.dim == manifest.embedding_dim and served.chunk == manifest.chunk
    service = Service([served], TokenStore.of_tokens([TOKEN]), ServiceConfig())
    with ServerThread(service) as url:
        for audio, pcm in corpus_audio:
            local = None
            for codec, transport in [("fp32", "ws"), ("fp16", "ws"), ("int8", "ws"), ("int8", "http")]:
                r = stream_utterance(url, manifest, prefix, pcm, codec, TOKEN, audio, transport=transport)
                assert len(r.embeddings) == manifest.chunk.frames_for(len(pcm))
                local = local or local_pipeline(r.embeddings)
                assert r.final == local, (audio, codec, transport)
                if transport == "ws":
                    assert len(r.chunks) == manifest.chunk.chunks_for(len(pcm))
                    assert r.chunks[-1].partial == r.final  # partials are not windowed at this length
            assert len(local.split()) >= 2


def test_veil_serve_and_veil_stream_transcribe_real_audio_and_log_no_content(
        shipped_export, corpus_audio, local_pipeline, tmp_path):
    """The noise-free model, so the server's text can be checked against the local pipeline's (the default
    model's phone adds fresh noise to every payload)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VEIL_SERVE_TOKENS", None)
    server = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "serve", "--checkpoint", str(SHIPPED),
                               "--port", "0", "--log-level", "debug"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        token = url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line, f"veil serve exited: {server.stderr.read()}"
            token = token or (re.search(r"token for this run: (\S+)", line) or [None, None])[1]
            url = (re.search(r"listening on (http://127\.0\.0\.1:\d+)", line) or [None, None])[1]
        assert token and url
        out = tmp_path / "stream.json"
        audio = [a for a, _ in corpus_audio[:2]]
        run = subprocess.run([sys.executable, "-m", "toolkit.cli", "stream", *audio, "--server", url, "--export",
                              str(shipped_export), "--codec", "int8", "--json", str(out)], cwd=ROOT,
                             env={**env, "VEIL_TOKEN": token}, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        results = json.loads(out.read_text())["results"]
        prefix = PrefixRunner(ExportManifest.read(shipped_export, only=["executorch"]), "executorch")
        sent = []
        for (a, pcm), r in zip(corpus_audio, results):
            chunks = list(prefix.chunks(pcm))
            emb = torch.cat([torch.from_numpy(e[: -(-v // 640)]) for _, v, e, _ in chunks]).numpy()
            assert r["final"] == local_pipeline(emb) and f"| {r['final']}" in run.stdout
            sent += [payload.encode(e, "int8") for _, _, e, _ in chunks]
        no_token = subprocess.run([sys.executable, "-m", "toolkit.cli", "stream", audio[0], "--server", url,
                                   "--export", str(shipped_export)], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=300)
        assert no_token.returncode == 2 and "4401 unauthorized" in no_token.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, logs = server.communicate(timeout=60)
    # graceful: uvicorn drains, then re-raises the SIGTERM it caught so supervisors see it
    assert server.returncode in (0, -signal.SIGTERM) and "shutting down: draining" in logs
    assert "final chunks=" in logs and "closed outcome=final" in logs and "code=4401" in logs
    from tests.test_serve import assert_no_content
    for r in results:
        assert_no_content(logs + stdout, r["final"], sent)
