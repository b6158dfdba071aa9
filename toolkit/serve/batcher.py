"""Dynamic batching across sessions: many sessions' suffix calls become one padded call, off the event loop.

The pattern of the anchors:
- the sherpa-onnx / k2-fsa streaming servers: an asyncio queue of (stream, future); a consumer takes up to
  ``max_batch_size`` ready items, waits at most ``max_wait_ms`` for more, runs the network in a thread pool
  (``nn_pool_size``) and resolves the futures;
- Triton's dynamic batcher: ``max_queue_delay_microseconds`` counted from the oldest queued request,
  ``preferred_batch_size`` / ``max_batch_size``;
- Ray Serve's ``@serve.batch(max_batch_size, batch_wait_timeout_s, max_concurrent_batches=1)``: the same
  contract, which ``toolkit/serve/ray_app.py`` uses for the scale-out deployment.

Here: a batch closes when it has ``max_batch`` items or when ``max_wait_ms`` have passed since its oldest item
was queued. Its items are sorted by length and cut into suffix calls whose padding stays within
``MAX_PADDING`` of their real frames and under ``max_batch_frames`` (B x longest T, which bounds the attention
memory of one call): padding a 50-frame partial to a 400-frame one would cost more than it saves (partials of
sessions at different chunks differ in length by multiples of 50 frames). Calls run one at a time on one worker
thread (torch releases the GIL, so the event loop keeps reading sockets meanwhile), each call's sessions are
answered as soon as it returns, and items that arrive meanwhile form the next batch at once. ``max_batch=1``
turns batching off (the benchmark's baseline).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MAX_PADDING = 1.25  # padded frames of one call <= 1.25 x its real frames


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_batch_frames: int = 16000   # padded frames per call: 32 x 500, or 10 x 1500 (a 60-s final)


@dataclass
class _Item:
    embeddings: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list[np.ndarray]], list[np.ndarray]], config: BatchConfig,
                 observe: Callable[[int, int, float, list[float]], None] | None = None):
        """``run_batch``: list of (T_i, d) -> list of results, in order (runs on the worker thread).
        ``observe(batch size, padded frames, seconds of the call, queue waits)`` records metrics."""
        self.run_batch = run_batch
        self.config = config
        self.observe = observe or (lambda *a: None)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="veil-suffix")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="veil-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for item in [self._queue.get_nowait() for _ in range(self._queue.qsize())]:
            if not item.future.done():
                item.future.set_exception(RuntimeError("batcher stopped"))
        self._pool.shutdown(wait=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def submit(self, embeddings: np.ndarray):
        """Queue one utterance's embeddings; resolves to its result when its batch has run."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(embeddings, future))
        return await future

    async def _next(self, timeout: float | None) -> _Item | None:
        if timeout is None:
            return await self._queue.get()
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _loop(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            batch = [first]
            deadline = first.queued_at + cfg.max_wait_ms / 1000.0
            while len(batch) < cfg.max_batch:
                item = await self._next(deadline - time.perf_counter())
                if item is None:
                    break
                batch.append(item)
            for call in length_groups([b for b in batch if not b.future.cancelled()], cfg.max_batch_frames):
                started = time.perf_counter()
                waits = [started - b.queued_at for b in call]
                try:
                    results = await loop.run_in_executor(self._pool, self.run_batch, [b.embeddings for b in call])
                except Exception as exc:  # the model failed: every session in the call gets internal_error
                    for b in call:
                        if not b.future.done():
                            b.future.set_exception(exc)
                    continue
                longest = max(len(b.embeddings) for b in call)
                self.observe(len(call), longest * len(call), time.perf_counter() - started, waits)
                for b, r in zip(call, results):
                    if not b.future.done():
                        b.future.set_result(r)


def length_groups(items: list[_Item], max_frames: int) -> list[list[_Item]]:
    """Items sorted by length, cut where one more would pad the call past MAX_PADDING x its real frames or past
    ``max_frames`` padded frames (a single item longer than that still forms its own call)."""
    calls, current, real = [], [], 0
    for item in sorted(items, key=lambda b: len(b.embeddings)):
        t = max(1, len(item.embeddings))  # sorted: the newcomer is the longest so far
        padded = (len(current) + 1) * t
        if current and (padded > MAX_PADDING * (real + t) or padded > max_frames):
            calls.append(current)
            current, real = [], 0
        current.append(item)
        real += t
    return calls + ([current] if current else [])
