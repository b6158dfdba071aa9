"""The load benchmark's report (``experiments/serve_load.py``, format ``veil-serve-load/1``): the Markdown page
rendered from the result JSON, and the README's headline table. Both are made again from the JSON alone by
``veil render RESULT.json [--readme README.md]``.
"""
from __future__ import annotations

from pathlib import Path

from toolkit.files import write_text
from toolkit.headlines import made_by

LOAD_FORMAT = "veil-serve-load/1"
SERVER_CORE, CLIENT_CORE = 0, 1  # the server and the load generator, each pinned to one core


def render_markdown(result: dict) -> str:
    """The whole report (every step of every config, the saturated runs, the summary) from the result JSON."""
    s = result["summary"]
    lines = [f"# `veil serve` load: {result['date']} on {result['host']}", "",
             f"Server: `veil serve`, {result['artifact']['checkpoint']} after block {result['artifact']['split_layer']}, "
             f"1 torch thread, pinned to core {SERVER_CORE}; generator pinned to core {CLIENT_CORE}. Phones: one 2-s "
             f"int8 chunk per 2 s of audio, {result['utterances']} real corpus utterances "
             f"({result['audio_seconds_per_utterance']:.1f} s mean), payloads pre-encoded from "
             f"`{result['artifact']['file']}` ({result['artifact']['backend']} {result['artifact']['recipe']}). "
             f"Each step: {result['warmup_s']:g} s warm-up, {result['measure_s']:g} s measured. A step *holds* when "
             f"p99 chunk->partial <= {result['p99_goal_ms']:g} ms with no error.", "",
             "| config | streams | chunk->partial p50 / p95 / p99 ms | END->final p50 / p95 / p99 ms | audio s per s | "
             "mean batch | server CPU ms/chunk | server CPU share | errors | holds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for config, steps in result["runs"].items():
        for st in steps:
            c, f = st["chunk_to_partial_ms"], st["end_to_final_ms"]
            lines.append(f"| {config} | {st['streams']} | {c['p50']} / {c['p95']} / {c['p99']} | {f['p50']} / {f['p95']} / "
                         f"{f['p99']} | {st['audio_seconds_per_wall_second']} | {st['batches']['mean']} | "
                         f"{st['server_cpu_ms_per_chunk']} | {st['server_cpu_share']} | {sum(st['errors'].values()) or 0} | "
                         f"{'yes' if st['holds'] else 'no'} |")
    if result.get("saturation"):
        lines += ["", f"Saturated throughput: {result['saturation_sessions']} sessions sending each next chunk as soon "
                      f"as its PARTIAL arrives (no pacing), {result['measure_s'] / 2:g} s measured:", "",
                  "| config | chunks/s | audio s per s | mean batch | chunk->partial p50 / p99 ms | server CPU share |",
                  "|---|---|---|---|---|---|"]
        for config, st in result["saturation"].items():
            c = st["chunk_to_partial_ms"]
            lines.append(f"| {config} | {st['chunks_per_s']} | {st['audio_seconds_per_wall_second']} | "
                         f"{st['batches']['mean']} | {c['p50']} / {c['p99']} | {st['server_cpu_share']} |")
    b = result["torch_baseline"]
    lines += ["", "**Summary**", "",
              f"- Largest N holding p99 chunk->partial <= {result['p99_goal_ms']:g} ms: batching **{s['max_streams'].get('batching', '—')}**, "
              f"batch size 1 **{s['max_streams'].get('batch-1', '—')}** (goal >= 100 with batching)."
              + ("" if s["ceiling_reached"].get("batching", True) else " (batching held at the last N tried: the limit is higher)"),
              f"- Sustained audio seconds decoded per wall second at those N: batching {s['throughput'].get('batching', '—')}, "
              f"batch 1 {s['throughput'].get('batch-1', '—')}: **{s.get('throughput_ratio', '—')}x** (goal >= 3x).",
              f"- Saturated (unpaced) throughput, audio seconds per wall second: batching "
              f"{s['saturated_audio_s_per_s'].get('batching')}, batch 1 {s['saturated_audio_s_per_s'].get('batch-1')}: "
              f"**{s['saturated_ratio']}x**; per second of server CPU (the server got only part of its core on "
              f"this shared machine, see the CPU share column) {s['saturated_audio_s_per_server_cpu_s'].get('batching')} "
              f"vs {s['saturated_audio_s_per_server_cpu_s'].get('batch-1')}: **{s['saturated_ratio_per_cpu']}x** "
              f"(goal >= 3x).",
              f"- Batch sizes at the largest holding N with batching: {s['batch_histogram_at_max']}.",
              f"- Load average of this 2-core machine (other jobs running): {result['load_average_at_start'][0]:.1f} at "
              f"the start, {result['load_average_at_end'][0]:.1f} at the end.",
              f"- Per chunk on one core: plain torch suffix {b['batch_1']['cpu_ms_per_chunk']} ms at batch 1"
              + (f", {b[s['baseline_batch_key']]['cpu_ms_per_chunk']} ms at batch {s['baseline_batch']}" if s['baseline_batch'] > 1 else "")
              + f" (sorted by length, its best case); the whole service, at the largest holding N: "
              f"{s['service_cpu_ms_per_chunk']} ms (batching), {s['service_cpu_ms_per_chunk_batch1']} ms (batch 1). "
              f"The service adds protocol, payload decoding, WebSocket, asyncio and metrics; CPU times on this shared "
              f"machine vary by about 20 % between runs.",
              f"- Request mix: {b['requests_per_chunk']} suffix requests per chunk (partials plus finals), "
              f"{b['mean_frames_per_request']} frames per request on average.", "",
              f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def headline(result: dict, source: str | None = None) -> str:
    """The README table: streams held and throughput with batching on and off, and where the goals stand."""
    s = result["summary"]
    lines = [f"| config | real-time streams held (p99 chunk→partial ≤ {result['p99_goal_ms']:g} ms) | "
             f"audio s decoded per s at that load | saturated audio s per s |", "|---|---|---|---|"]
    for config, label in (("batching", "dynamic batching"), ("batch-1", "batch size 1")):
        if config in s["max_streams"]:
            lines.append(f"| {label} | {s['max_streams'][config]} | {s['throughput'].get(config)} | "
                         f"{s['saturated_audio_s_per_s'].get(config, '—')} |")
    lines += ["", f"The shipped model's suffix, one torch thread on one core of a shared 2-core VM (load average "
                  f"{result['load_average_at_start'][0]:.1f}), {result['date']}; batching vs batch size 1: "
                  f"{s['throughput_ratio']}x sustained, {s['saturated_ratio_per_cpu']}x saturated per server CPU "
                  f"second (goals: 100 streams, 3x; details in docs/SERVE.md). "
                  + made_by(result["command"].removeprefix("nice -n 5 .venv/bin/python "), source)]
    return "\n".join(lines) + "\n"


def rerender(result: dict, path: Path) -> list[Path]:
    """``<result>.md`` from the result JSON."""
    md = Path(path).with_suffix(".md")
    write_text(md, render_markdown(result))
    return [md]
