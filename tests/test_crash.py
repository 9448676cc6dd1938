"""A worker killed mid-stream, restarted on the same data, topics and group, loses nothing and counts nothing twice."""

from __future__ import annotations

import time
from collections import defaultdict

import httpx
from confluent_kafka import Consumer, TopicPartition

from loadtests.ground_truth import GroundTruth, build
from tests.conftest import free_port
from tests.processes import start_spanstream
from tests.test_ground_truth import (
    UNKNOWN_MODEL_USD,
    assert_matches_ground_truth,
    complete,
    list_sessions,
    publish,
    serve_env,
    two_projects,
    wait_until_complete,
)


def _halves(messages: list[tuple[bytes, bytes]]) -> tuple[list, list, list]:
    """(first half, its tail, second half). Every other session is delivered whole in the first
    half, its last message in the tail; the others are cut in the middle of their messages. The
    order of each session's messages is kept."""
    by_session: dict[bytes, list[int]] = defaultdict(list)
    for index, (key, _) in enumerate(messages):
        by_session[key].append(index)
    first, tail, second = [], [], []
    for number, indices in enumerate(by_session.values()):
        if number % 2:
            first += indices[:-1]
            tail += indices[-1:]
        else:
            first += indices[: len(indices) // 2]
            second += indices[len(indices) // 2:]
    return tuple([messages[index] for index in sorted(part)] for part in (first, tail, second))


def _spans_visible(base: str, key: str, session_id: str) -> int:
    response = httpx.get(f"{base}/api/spans", params={"session_id": session_id, "limit": 1000},
                         headers={"X-API-Key": key})
    return len(response.json()["items"])


def _whole_in_first_half(truth: GroundTruth, tail: list[tuple[bytes, bytes]], count: int) -> list[tuple[str, str]]:
    ids = {key.decode() for key, _ in tail} - truth.shared
    return [key for key in sorted(truth.expected) if key[1] in ids][:count]


def _uncommitted(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Messages of `topic` past the group's committed offsets: what a restart consumes again."""
    # Reading a group's offsets does not join it.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def test_a_killed_worker_resumes_where_it_stopped(settings, tmp_path_factory):
    keys = two_projects(settings)
    truth = build(seed=1122, sessions=160, project_ids=tuple(keys), unknown_model_usd=UNKNOWN_MODEL_USD)
    first_half, tail, second_half = _halves(truth.messages())
    data_dir = tmp_path_factory.mktemp("crash")
    env = serve_env(settings, data_dir, "crash", free_port())
    topic = env["SPANSTREAM_SPANS_TOPIC"]
    running = []
    try:
        first = start_spanstream("serve", env, int(env["SPANSTREAM_API_PORT"]), data_dir / "serve-1.log")
        running.append(first)
        publishing = time.monotonic()
        publish(settings, topic, first_half)
        while not (listed := list_sessions(first.base, keys)) and time.monotonic() < publishing + 60:
            time.sleep(0.05)
        assert listed, "no session became visible before the kill"
        group = env["SPANSTREAM_WORKER_ID"]
        # Some offsets committed, so that the restart resumes from a commit, not from the start.
        while (_uncommitted(settings.kafka_bootstrap, group, topic, 3) == len(first_half)
               and time.monotonic() < publishing + 60):
            time.sleep(0.1)
        # Then the last message of every other session, and the kill as soon as the worker has
        # stored their spans: before its next commit (every 2.8 s), so they are redelivered.
        publish(settings, topic, tail)
        watched = _whole_in_first_half(truth, tail, 6)
        while time.monotonic() < publishing + 60 and any(
                _spans_visible(first.base, keys[project], session) < truth.expected[(project, session)].spans
                for project, session in watched):
            time.sleep(0.02)
        first.process.kill()
        first.process.wait(10)
        killed = time.monotonic()
        assert complete(listed, truth) < len(truth.expected)
        replayed = _uncommitted(settings.kafka_bootstrap, group, topic, 3)
        print(f"\nkilled {killed - publishing:.1f} s after publishing began, with {len(listed)} of "
              f"{len(truth.expected)} sessions visible before the tail was sent and {replayed} of "
              f"{len(first_half) + len(tail)} messages not committed")

        # Same data dir, topics and worker id: the same consumer group and table changelog.
        env["SPANSTREAM_API_PORT"] = str(free_port())
        second = start_spanstream("serve", env, int(env["SPANSTREAM_API_PORT"]), data_dir / "serve-2.log")
        running.append(second)
        ready = time.monotonic()
        publish(settings, topic, second_half)
        before = {key: item["spans"] for key, item in list_sessions(second.base, keys).items()}
        while time.monotonic() < killed + 300:
            if {key: item["spans"] for key, item in list_sessions(second.base, keys).items()} != before:
                break
            time.sleep(0.2)
        resumed = time.monotonic()
        wait_until_complete(second.base, keys, truth, timeout=max(killed + 300 - time.monotonic(), 30))
        print(f"after the kill: API ready in {ready - killed:.1f} s, consuming again in {resumed - killed:.1f} s, "
              f"every session complete in {time.monotonic() - killed:.1f} s")
        assert_matches_ground_truth(second.base, keys, truth)
        assert second.stop() == 0, second.log.read_text()[-3000:]
    finally:
        for server in running:
            if server.process.poll() is None:
                server.stop()
