"""Scale-out on Ray Serve: the same service, with the suffix batcher as an autoscaling deployment.

    Gateway (FastAPI ingress: the protocol, auth, limits, metrics; one per node)
        └── SuffixReplica x N (autoscaled): @serve.batch(max_batch_size, batch_wait_timeout_s) -> ServedSuffix.labels

The gateway is ``toolkit.serve.app.create_app`` unchanged; only its batcher differs: instead of the in-process
:class:`DynamicBatcher` it awaits ``SuffixReplica.labels``, and Ray Serve's ``@serve.batch`` forms the batches
inside each replica (the same contract: a list of (T_i, d) embeddings in, their labels out, a batch closing at
``max_batch`` items or ``max_wait_ms``). Autoscaling follows ongoing requests per replica
(``target_ongoing_requests``), as Ray Serve's autoscaler does.

Start it with one command, ``veil serve --engine ray`` (a local Ray, this machine's cores), or on a cluster
with Ray's CLI: ``serve run toolkit.serve.ray_app:build_app checkpoint=models/k6-d16-n0.5.safetensors``.
Ray binds more than the HTTP port (GCS, raylets, object store): on a shared host run it inside a network
namespace or on a private network (docs/SERVE.md).
"""
from __future__ import annotations

import asyncio
import os

import numpy as np
import ray
import torch
from ray import serve

from toolkit.paths import DEFAULT_MODEL
from toolkit.serve.app import Service, ServiceConfig, create_app
from toolkit.serve.admission import AdmissionLimits
from toolkit.serve.auth import TOKENS_ENV, TokenStore
from toolkit.serve.server import ray_reach
from toolkit.serve.batcher import BatchConfig
from toolkit.serve.session import SessionLimits
from toolkit.serve.suffix import ServedSuffix

AUTOSCALING = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16,
               "upscale_delay_s": 5.0, "downscale_delay_s": 60.0}


@serve.deployment(autoscaling_config=AUTOSCALING, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class SuffixReplica:
    """One suffix; Ray Serve batches concurrent calls of ``labels`` from every gateway."""

    def __init__(self, checkpoint: str, split_layer: int | None, max_batch: int, max_wait_ms: float, threads: int = 1):
        torch.set_num_threads(threads)
        self.served = ServedSuffix.load(checkpoint, split_layer)
        self.labels.set_max_batch_size(max_batch)
        self.labels.set_batch_wait_timeout_s(max_wait_ms / 1000.0)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, max_concurrent_batches=1)
    async def labels(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        # off the replica's event loop, like DynamicBatcher's worker thread
        return await asyncio.to_thread(self.served.labels, batch)


class ReplicaBatcher:
    """The service's batcher interface (start/stop/submit) over the SuffixReplica deployment."""

    def __init__(self, handle):
        self.handle = handle

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def submit(self, embeddings: np.ndarray) -> np.ndarray:
        return await self.handle.labels.remote(embeddings)


@serve.deployment(num_replicas=1, max_ongoing_requests=1024)
@serve.ingress()
class Gateway:
    def __init__(self, suffix, checkpoint: str, split_layer: int | None, config: ServiceConfig,
                 token_hashes: list[str] | None):
        served = ServedSuffix.load(checkpoint, split_layer)  # identity, geometry, tokenizer: text from labels
        tokens = None if token_hashes is None else TokenStore(token_hashes)
        self.service = Service([served], tokens, config, batcher_factory=lambda _: ReplicaBatcher(suffix))

    def __serve_build_asgi_app__(self):
        return create_app(self.service)


def build_app(args: dict):
    """The application: ``serve run toolkit.serve.ray_app:build_app key=value ...`` or :func:`run_local`.
    Keys: checkpoint, split_layer, max_batch, max_wait_ms, max_replicas, insecure_no_auth, and the limits of
    ``veil serve`` (max_message_bytes, max_utterance_s, partial_window_s, idle_timeout_s, max_sessions,
    max_sessions_per_token, rate_limit, rate_burst). Token hashes come from $VEIL_SERVE_TOKENS."""
    checkpoint = str(args.get("checkpoint", DEFAULT_MODEL))
    split_layer = int(args["split_layer"]) if args.get("split_layer") not in (None, "") else None
    config = ServiceConfig(
        session=SessionLimits(int(args.get("max_message_bytes", 65536)), float(args.get("max_utterance_s", 60.0)),
                              float(args.get("partial_window_s", 16.0)), float(args.get("idle_timeout_s", 30.0))),
        admission=AdmissionLimits(int(args.get("max_sessions", 256)), int(args.get("max_sessions_per_token", 32)),
                                  float(args.get("rate_limit", 50.0)), float(args.get("rate_burst", 100.0))),
        batch=BatchConfig(int(args.get("max_batch", 32)), float(args.get("max_wait_ms", 5.0))))
    insecure = str(args.get("insecure_no_auth", "")).lower() in ("1", "true", "yes")
    hashes = None if insecure else [h.removeprefix("sha256:") for h in args.get("token_hashes") or
                                    os.environ.get(TOKENS_ENV, "").replace(",", " ").split()]
    if hashes is not None and not hashes:
        raise ValueError(f"no token hashes: set ${TOKENS_ENV} (sha256:<hex> ...) or insecure_no_auth=true")
    scaling = {**AUTOSCALING, "max_replicas": int(args.get("max_replicas", AUTOSCALING["max_replicas"]))}
    suffix = SuffixReplica.options(autoscaling_config=scaling).bind(
        checkpoint, split_layer, config.batch.max_batch, config.batch.max_wait_ms, int(args.get("threads", 1)))
    return Gateway.bind(suffix, checkpoint, split_layer, config, hashes)


def run_local(args: dict, host: str, port: int, num_cpus: int | None = None) -> list[str]:
    """Start a local Ray, deploy, return once the application is running (``serve.shutdown()`` ends it), with
    the interfaces besides ``lo`` that Ray's ports are reachable on. Refused (VeilError) before Ray starts on a
    loopback ``host`` while other interfaces are in reach (:func:`toolkit.serve.server.ray_reach`)."""
    exposed = ray_reach(host)
    ray.init(num_cpus=num_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(args), name="veil", route_prefix="/")
    return exposed
