"""A sink writes what its topic holds into ClickHouse and commits only what is durable."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from spanstream.insert_bodies import RECORD_SETTINGS, RECORDS_FORMAT
from spanstream.topic_names import faust_sink_group_name
from streams.sink import BodyWriter
from streams.topic_sink import TopicSink

PARTITIONS = 2


@pytest.fixture
def topic(settings):
    name = f"sink-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def table(store):
    name = f"sink_test_{uuid.uuid4().hex[:8]}"
    yield name
    store.command_sync(f"DROP TABLE IF EXISTS {name}")


def _create(store, table: str) -> None:
    store.command_sync(f"CREATE TABLE IF NOT EXISTS {table} (id UInt32, at UInt64) "
                       "ENGINE = ReplacingMergeTree(at) ORDER BY id")


def _publish(settings, topic: str, ids: range) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for id_ in ids:
        producer.produce(topic, orjson.dumps({"id": id_, "at": id_}), key=str(id_).encode())
    assert producer.flush(30) == 0


def _committed(settings, group: str, topic: str) -> int:
    """Messages of `topic` below the group's committed offsets."""
    client = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        offsets = client.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        client.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def _sink(settings, store, topic: str, table: str, worker_id: str) -> tuple[TopicSink, BodyWriter]:
    writer = BodyWriter(store, table, ["id", "at"], RECORDS_FORMAT, RECORD_SETTINGS, max_backoff=0.2)
    sink = TopicSink(settings.model_copy(update={"worker_id": worker_id}), "test", topic,
                     lambda value: writer.add(value + b"\n"), [writer], max_messages=50, max_seconds=0.2)
    return sink, writer


class Running:
    def __init__(self, sink: TopicSink) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=sink.run, args=(self.stopping,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _ids(store, table: str) -> list[int]:
    return [row["id"] for row in store.query_sync(f"SELECT id FROM {table} FINAL ORDER BY id")]


def test_every_message_is_written_once_and_committed(settings, store, topic, table):
    _create(store, table)
    _publish(settings, topic, range(500))
    sink, writer = _sink(settings, store, topic, table, f"w-{uuid.uuid4().hex[:6]}")
    with Running(sink):
        _until(lambda: _committed(settings, sink.group, topic) == 500)
        _publish(settings, topic, range(500, 520))  # a sink at the end of its topic keeps up
        _until(lambda: _committed(settings, sink.group, topic) == 520)
    assert _ids(store, table) == list(range(520))
    assert writer.retries == 0


def test_while_clickhouse_refuses_nothing_is_committed_and_nothing_is_lost(settings, store, topic, table):
    """No table yet: every insert fails. The sink keeps the batch, retries, commits nothing and
    reads no further; once the table exists the rows arrive, each once."""
    _publish(settings, topic, range(120))
    sink, writer = _sink(settings, store, topic, table, f"w-{uuid.uuid4().hex[:6]}")
    with Running(sink):
        _until(lambda: writer.retries >= 3)
        assert _committed(settings, sink.group, topic) == 0
        _create(store, table)
        _until(lambda: _committed(settings, sink.group, topic) == 120)
    assert _ids(store, table) == list(range(120))


def test_a_restarted_sink_goes_on_from_its_commits(settings, store, topic, table):
    _create(store, table)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    _publish(settings, topic, range(100))
    sink, _ = _sink(settings, store, topic, table, worker)
    with Running(sink):
        _until(lambda: _committed(settings, sink.group, topic) == 100)
    store.command_sync(f"TRUNCATE TABLE {table}")
    _publish(settings, topic, range(100, 130))
    sink, _ = _sink(settings, store, topic, table, worker)
    with Running(sink):
        _until(lambda: _committed(settings, sink.group, topic) == 130)
    assert _ids(store, table) == list(range(100, 130))


def test_a_new_sink_group_takes_up_where_the_faust_sink_stopped(settings, store, topic, table):
    """An upgrade from the Faust sinks must not insert the whole retained topic again."""
    _create(store, table)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    _publish(settings, topic, range(200))
    # What the Faust sink had committed: all but the last 10 messages of each partition.
    faust = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": faust_sink_group_name(worker)})
    ends = [faust.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)]
    faust.commit(offsets=[TopicPartition(topic, p, end - 10) for p, end in enumerate(ends)], asynchronous=False)
    faust.close()
    sink, _ = _sink(settings, store, topic, table, worker)
    with Running(sink):
        _until(lambda: _committed(settings, sink.group, topic) == 200)
    assert len(_ids(store, table)) == 10 * PARTITIONS


def test_a_writer_is_flushed_only_once_the_writers_before_it_are_durable(settings, store, topic, table):
    """What the sessions sink relies on to write a session's cost cells before its row (so that
    a session is never readable without them): while the first table refuses, the second gets
    nothing; once it exists, both get every row."""
    cells = f"{table}_first"
    _create(store, table)
    first = BodyWriter(store, cells, ["id", "at"], RECORDS_FORMAT, RECORD_SETTINGS, max_backoff=0.2)
    second = BodyWriter(store, table, ["id", "at"], RECORDS_FORMAT, RECORD_SETTINGS, max_backoff=0.2)

    def both(value: bytes) -> None:
        first.add(value + b"\n")
        second.add(value + b"\n")

    _publish(settings, topic, range(80))
    sink = TopicSink(settings.model_copy(update={"worker_id": f"w-{uuid.uuid4().hex[:6]}"}), "test", topic, both,
                     [first, second], max_messages=50, max_seconds=0.2)
    try:
        with Running(sink):
            _until(lambda: first.retries >= 3)
            assert _ids(store, table) == []
            _create(store, cells)
            _until(lambda: _committed(settings, sink.group, topic) == 80)
        assert _ids(store, cells) == _ids(store, table) == list(range(80))
    finally:
        store.command_sync(f"DROP TABLE IF EXISTS {cells}")
