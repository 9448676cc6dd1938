"""Reading ranges of the `spans` topic for replay: where each partition starts and ends, and a scan between.

Shared by the replay parent (the `--from` key pass) and its fold workers, which each read
their own partitions with their own consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

# Fetches this large keep the consumer ahead of the fold; at librdkafka's default of 1 MiB a
# partition, a scan of 5,000 batch messages sat idle for a second waiting on fetches.
CONSUMER_CONFIG = {"enable.auto.commit": False, "fetch.max.bytes": 64 * 1024 * 1024,
                   "max.partition.fetch.bytes": 16 * 1024 * 1024}


def replay_consumer(bootstrap: str, group_id: str) -> Consumer:
    """A consumer that only reads assigned ranges: it never commits, so it moves no group's offsets."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, **CONSUMER_CONFIG})


def offset_ranges(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    """Each non-empty partition's range [low, high) as it is now: replay stops at what exists at its start."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ranges = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ranges[partition] = (low, high)
    return ranges


def start_offsets(consumer: Consumer, topic: str, ends: dict[int, int], since: datetime) -> dict[int, int]:
    """Each partition's first offset whose message timestamp is at or after `since`."""
    wanted = [TopicPartition(topic, p, int(since.timestamp() * 1000)) for p in ends]
    found = consumer.offsets_for_times(wanted, timeout=10)
    # -1: no message that late in this partition
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def scan(consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int],
         on_message: Callable[[Message], None], after_batch: Callable[[], None] = lambda: None) -> None:
    """Calls `on_message` for every message from `starts` up to (not including) `ends`, and
    `after_batch` after each batch the consumer hands over (and while it waits for one)."""
    remaining = {p: end for p, end in ends.items() if starts.get(p, end) < end}
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in remaining])
    position = {p: starts[p] for p in remaining}
    while remaining:
        # consume() waits for all it asks for: never ask for more than is left before the ends.
        left = sum(remaining[p] - position[p] for p in remaining)
        batch = consumer.consume(num_messages=max(1, min(2000, left)), timeout=1.0)
        if not batch:
            # Offsets can have gaps (compaction, transaction markers): go by position too.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        for message in batch:
            end = remaining.get(message.partition())
            if message.error() is not None or end is None:
                continue
            if message.offset() < end:
                on_message(message)
            position[message.partition()] = message.offset() + 1
            if message.offset() + 1 >= end:
                del remaining[message.partition()]
        after_batch()
    consumer.unassign()
