"""CPU per span of the fold's own work, without Kafka: the live fold's frames and a replay worker's messages.

Both targets of issue 4 (replay and end to end throughput) are bound by this work on a 2-core
machine, and a pipeline run is too noisy to see a 5% change in it. This runs exactly the fold's
per-span work over generated sessions, in one process, and reports process CPU time per span,
by stage, the minimum of several rounds. With `--against DIR` it runs the same messages through
another checkout too (a clean one of main: loadtests/README.md), in child processes that
alternate between the two trees, so that both see the same machine state.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal

# streams.agents.ROWS_BODY_BYTES (importing it imports faust, which a run under valgrind waits for).
ROWS_BODY_BYTES = 1024 * 1024
LIVE_STAGES = ("unpack", "decode", "rows", "fold", "publish")
FRAME_STEP_STAGES = ("unpack", "fold_frame", "publish")
REPLAY_STAGES = ("messages", "finish")
# Fixed, so that every span is priced: the seed's prices start in 2025 (some late in the year).
START = datetime(2026, 11, 1, tzinfo=UTC)
# The seed's list prices for the generator's models (migrations/postgres/0002_model_pricing.sql).
PRICES = (
    ("claude-opus-4-1", "15", "75", "1.50", "18.75"),
    ("claude-sonnet-4-5", "3", "15", "0.30", "3.75"),
    ("claude-haiku-4-5", "1", "5", "0.10", "1.25"),
    ("gpt-4o", "2.50", "10", "1.25", "2.50"),
    ("gpt-4o-mini", "0.15", "0.60", "0.075", "0.15"),
)


def price_book():
    from streams.pricing import ModelPrice, PriceBook

    rows = [ModelPrice(provider="bench", model_id=model, display_name=model, input_usd_per_mtok=Decimal(i),
                       output_usd_per_mtok=Decimal(o), cache_read_usd_per_mtok=Decimal(r),
                       cache_creation_usd_per_mtok=Decimal(w), thinking_usd_per_mtok=Decimal(o),
                       effective_from=datetime(2025, 1, 1, tzinfo=UTC))
            for model, i, o, r, w in PRICES]
    return PriceBook(rows, Decimal("0.01"))


def make_frames(sessions: int, spans_per_session: int, spans_per_message: int | None, messages_per_frame: int,
                seed: int = 0) -> list[bytes]:
    """`spans.batches` frames as the batcher writes them. With `spans_per_message`, each session
    is cut into messages of that many spans and 64 sessions at a time interleave, so that a
    session's later messages come in later frames and the fold loads its stored state."""
    from loadtests.generate import generate_session
    from schemas.span import encode_spans, session_messages
    from streams.span_batches import pack

    messages: list[tuple[bytes, bytes]] = []
    wave = 64 if spans_per_message else 1
    for first in range(0, sessions, wave):
        group = [generate_session(seed, index, spans_per_session, "bench-fold", START)
                 for index in range(first, min(first + wave, sessions))]
        if not spans_per_message:
            for spans in group:
                messages.extend(session_messages(spans))
            continue
        for cut in range(0, spans_per_session, spans_per_message):
            for spans in group:
                messages.append((spans[0].session_id.encode(), encode_spans(spans[cut:cut + spans_per_message])))
    return [pack([(offset, key, value) for offset, (key, value) in enumerate(messages[at:at + messages_per_frame], at)])
            for at in range(0, len(messages), messages_per_frame)]


def session_table():
    """A dict standing in for the fold's sessions table, and its `load` as agents.py has it."""
    import orjson

    from streams.sessions import load_state

    table: dict[bytes, bytes] = {}

    def load(key: bytes):
        stored = table.get(key)
        return load_state(orjson.loads(stored)) if stored else None

    return table, load


def publish(batch, table: dict[bytes, bytes], published: list[bytes]) -> None:
    """What fold_sessions does after the fold: each changed session into the table, every
    session's record and each health change encoded (kept in `published`, not sent)."""
    import orjson

    from streams.sessions import dump_state, session_record

    for key, state in batch.states.items():
        if key in batch.changed:
            table[key] = orjson.dumps(dump_state(state))
        published.append(orjson.dumps(session_record(state, state.health_tag)))
    for _, change in batch.health_changes:
        published.append(orjson.dumps(change))


def live_round(frames: list[bytes], book, rules) -> tuple[dict[str, float], int]:
    """What streams/agents.py fold_sessions did with a frame before it called fold_frame
    (1ecc574), with a dict for the sessions table and the records kept instead of published.
    CPU seconds by stage, and the spans folded."""
    from schemas.span import decode_message
    from spanstream.insert_bodies import encode_span_rows
    from streams.session_step import fold_batch
    from streams.span_batches import unpack

    table, load = session_table()

    clock = time.process_time
    cpu = dict.fromkeys(LIVE_STAGES, 0.0)
    spans_folded = 0
    for frame in frames:
        published = []
        t0 = clock()
        items = unpack(frame)
        t1 = clock()
        decoded = []
        for item in items:
            spans, _ = decode_message(item.value)
            decoded.append(spans)
        t2 = clock()
        readable = [span for spans in decoded for span in spans]
        published.extend(encode_span_rows(readable, ROWS_BODY_BYTES))
        t3 = clock()
        batch = fold_batch(decoded, load, book, rules)
        t4 = clock()
        publish(batch, table, published)
        t5 = clock()
        spans_folded += len(readable)
        for stage, seconds in zip(LIVE_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            cpu[stage] += seconds
    return cpu, spans_folded


def frame_step_round(frames: list[bytes], book, rules) -> tuple[dict[str, float], int] | None:
    """The same frames through streams/frame_step.py fold_frame (message by message), then
    published as above; None for a checkout without it."""
    try:
        from streams.frame_step import fold_frame
    except ImportError:
        return None
    from streams.span_batches import unpack

    table, load = session_table()

    clock = time.process_time
    cpu = dict.fromkeys(FRAME_STEP_STAGES, 0.0)
    spans_folded = 0
    for frame in frames:
        published = []
        t0 = clock()
        items = unpack(frame)
        t1 = clock()
        folded = fold_frame([item.value for item in items], load, book, rules, ROWS_BODY_BYTES)
        published.extend(folded.span_rows)
        t2 = clock()
        batch = folded.batch
        publish(batch, table, published)
        t3 = clock()
        spans_folded += folded.spans
        for stage, seconds in zip(FRAME_STEP_STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            cpu[stage] += seconds
    return cpu, spans_folded


def replay_round(frames: list[bytes], book, rules) -> tuple[dict[str, float], int] | None:
    """spanstream/replay_worker.py WorkerFold over the frames' messages, the bodies dropped;
    None for a checkout without it (a copy of the old loop here would only drift from it)."""
    from spanstream.replay import FLUSH_ROWS
    from spanstream.replay_worker import FoldJob
    from streams.span_batches import unpack

    try:
        from spanstream.replay_worker import WorkerFold
    except ImportError:
        return None
    messages = [item for frame in frames for item in unpack(frame)]
    # By name: a checkout from before the workers took their consumer's address at start also
    # wanted it in the job.
    named = {field.name for field in dataclasses.fields(FoldJob)}
    where = {name: value for name, value in (("bootstrap", ""), ("group_id", ""), ("topic", "spans")) if name in named}
    job = FoldJob(**where, starts={}, ends={}, book=book, rules=rules, write_spans=True, chunk_rows=FLUSH_ROWS,
                  body_dir="")
    folder = WorkerFold(job, lambda view, rows, body: None)
    clock = time.process_time
    spans = 0
    t0 = clock()
    for item in messages:
        spans += folder.fold_message(item.key, item.value, 0, item.offset)
    t1 = clock()
    folder.finish()
    t2 = clock()
    return {"messages": t1 - t0, "finish": t2 - t1}, spans


def measure(frames: list[bytes], rounds: int) -> dict[str, dict[str, float]]:
    """µs per span by stage, the minimum over `rounds` (after one round of warm-up)."""
    from streams.health import HealthRules
    from streams.heap import settle_heap

    book, rules = price_book(), HealthRules()
    best: dict[str, dict[str, float]] = {"live": {}, "frame_step": {}, "replay": {}}
    for number in range(rounds + 1):
        # Each path with the collector as it runs there: the fold process settles its heap,
        # a replay worker turns the collector off.
        settle_heap()
        runs = {"live": live_round(frames, book, rules), "frame_step": frame_step_round(frames, book, rules)}
        gc.collect()
        gc.disable()
        runs["replay"] = replay_round(frames, book, rules)
        gc.enable()
        gc.collect()
        if number == 0:
            continue
        for path, run in runs.items():
            if run is None:
                continue
            stages, count = run
            stages = {**stages, "total": sum(stages.values())}
            for stage, seconds in stages.items():
                us = seconds / count * 1e6
                best[path][stage] = min(best[path].get(stage, us), us)
    return best


def child(frames_file: str, rounds: int) -> None:
    with open(frames_file, "rb") as file:
        frames = pickle.load(file)
    print(json.dumps(measure(frames, rounds)))


def run_tree(tree: str, frames_file: str, rounds: int) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": tree}
    # This file, with the other tree's code: it may predate the harness.
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", frames_file, "--rounds", str(rounds)],
                          cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the run in {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge(into: dict, result: dict) -> None:
    for path, stages in result.items():
        for stage, us in stages.items():
            into.setdefault(path, {})[stage] = min(into.get(path, {}).get(stage, us), us)


def report(results: dict[str, dict]) -> None:
    trees = list(results)
    for key, title, stages in (
        ("live", "live fold, three passes a frame (streams/agents.py before 1ecc574)", LIVE_STAGES),
        ("frame_step", "live fold, message by message (streams/frame_step.py fold_frame, what agents.py runs)", FRAME_STEP_STAGES),
        ("replay", "replay worker (spanstream/replay_worker.py WorkerFold)", REPLAY_STAGES),
    ):
        print(f"\n{title}: CPU µs per span, min of rounds")
        print(f"  {'stage':<10}" + "".join(f"{os.path.basename(t.rstrip('/')) or t:>14}" for t in trees)
              + ("      change" if len(trees) == 2 else ""))
        for stage in (*stages, "total"):
            values = [results[t].get(key, {}).get(stage) for t in trees]
            line = f"  {stage:<10}" + "".join(f"{v:>14.2f}" if v is not None else f"{'-':>14}" for v in values)
            if len(values) == 2 and all(values):
                line += f"  {100 * (values[1] / values[0] - 1):>+9.1f}%"
            print(line)
    if len(trees) == 2 and results[trees[1]].get("frame_step") and results[trees[0]].get("live"):
        before, after = results[trees[0]]["live"]["total"], results[trees[1]]["frame_step"]["total"]
        print(f"\nlive fold, {os.path.basename(trees[0])} in three passes -> {os.path.basename(trees[1])} message by "
              f"message: {before:.2f} -> {after:.2f} µs per span ({100 * (after / before - 1):+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--spans-per-session", type=int, default=50)
    parser.add_argument("--spans-per-message", type=int, default=None,
                        help="cut sessions into messages of N spans (default: one message per session)")
    parser.add_argument("--messages-per-frame", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per process")
    parser.add_argument("--processes", type=int, default=2, help="with --against: processes per tree, alternating")
    parser.add_argument("--against", metavar="DIR", help="another checkout to compare with (run first)")
    parser.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return
    began = time.perf_counter()
    frames = make_frames(args.sessions, args.spans_per_session, args.spans_per_message, args.messages_per_frame)
    spans = args.sessions * args.spans_per_session
    print(f"{spans:,} spans in {args.sessions:,} sessions, {len(frames)} frames "
          f"({sum(map(len, frames)) / len(frames) / 1024:.0f} KiB each); generated in {time.perf_counter() - began:.1f} s")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not args.against:
        report({here: measure(frames, args.rounds)})
        return
    trees = [os.path.abspath(args.against), here]
    if trees[0] == trees[1]:
        raise SystemExit("--against names this checkout")
    results: dict[str, dict] = {tree: {} for tree in trees}
    with tempfile.NamedTemporaryFile(suffix=".pickle") as file:
        pickle.dump(frames, file)
        file.flush()
        for number in range(args.processes):
            for tree in trees:
                merge(results[tree], run_tree(tree, file.name, args.rounds))
                print(f"  process {number + 1}/{args.processes} in {tree} done")
    report(results)


if __name__ == "__main__":
    main()
