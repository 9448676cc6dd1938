"""Reading back what a reconnecting client missed: from its Last-Event-ID to where the live feed
was when it joined, partition by partition, with the same ids the feed gives.

Together with the live events from the join on, that is every event after the id exactly once:
the feed hands a joining client everything after `until`, and this reads everything before it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from confluent_kafka import Consumer, KafkaError, TopicPartition

from api.live.events import LiveFilter
from api.live.feed import LiveFeed, consumer_config, read_events
from api.live.positions import ALL_CODES, Codes, Position, PositionTracker

# Chunks waiting for a slow client: the reader thread blocks rather than read further ahead.
_QUEUED_CHUNKS = 8


def missed_ranges(resume: Position, until: Position, codes: Codes = ALL_CODES
                  ) -> dict[tuple[str, int], tuple[tuple[int, int], int]]:
    """Per partition the client is behind in: (its mark, the feed's next offset at the join).

    Only topics in `codes` (those of the event types the client asks for now) and named by the
    id count: a topic the id does not name was not being followed, so there is nothing it
    missed there (a client that asks for more types than before gets the new ones from now).
    A partition of a named topic that the id does not list was added since: read from its start."""
    named = resume.topics()
    return {partition: (resume.mark(partition), end) for partition, (end, _) in until.marks.items()
            if partition[0] in codes and partition[0] in named and resume.mark(partition) < (end, 0)}


async def missed_events(feed: LiveFeed, live_filter: LiveFilter, resume: Position, until: Position,
                        keepalive: float) -> AsyncIterator[bytes]:
    """SSE chunks of the events the client missed; a keepalive comment while nothing matches."""
    ranges = missed_ranges(resume, until, live_filter.codes)
    if not ranges:
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUED_CHUNKS)
    stopping = threading.Event()

    def hand_over(item: bytes | BaseException | None) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stopping.is_set():
            try:
                return future.result(0.5)
            except TimeoutError:
                continue
        future.cancel()

    def read() -> None:
        try:
            _read_back(feed, live_filter, resume, ranges, hand_over, stopping)
            hand_over(None)
        except BaseException as error:  # noqa: BLE001 - handed to the response, which raises it
            hand_over(error)

    reader = loop.run_in_executor(None, read)
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        await asyncio.shield(reader)


def _read_back(feed: LiveFeed, live_filter: LiveFilter, resume: Position, ranges, hand_over, stopping) -> None:
    codes = {topic: code for code, topic in feed.topics.items()}
    ids = live_filter.codes
    consumer = Consumer(consumer_config(feed._settings, **{"enable.partition.eof": True}))
    try:
        consumer.assign([TopicPartition(feed.topics[code], partition, start[0])
                         for (code, partition), (start, _) in ranges.items()])
        # Partitions the id does not name (a topic added since) are read from their beginning.
        tracker = PositionTracker(Position({partition: (0, 0) for partition in ranges} | resume.marks))
        skip = {partition: start for partition, (start, _) in ranges.items() if start[1]}
        remaining = {(feed.topics[code], partition): end for (code, partition), (_, end) in ranges.items()}
        projects = {live_filter.project_id}
        while remaining and not stopping.is_set():
            wanted = []
            for message in consumer.consume(num_messages=2000, timeout=0.5):
                key = (message.topic(), message.partition())
                if key not in remaining:
                    continue
                error = message.error()
                if error is not None:
                    # The end of the partition before `end`: the rest was compacted away.
                    if error.code() == KafkaError._PARTITION_EOF:
                        del remaining[key]
                    continue
                if message.offset() >= remaining[key]:
                    del remaining[key]
                    consumer.pause([TopicPartition(*key)])
                    continue
                wanted.append(message)
                if message.offset() + 1 >= remaining[key]:
                    del remaining[key]
                    consumer.pause([TopicPartition(*key)])
            events, _ = read_events(wanted, codes, projects, tracker, live_filter, skip, codesets=(ids,))
            if events:
                feed.stats.events_resent += len(events)
                hand_over(b"".join(event.frames[ids] for event in events))
    finally:
        consumer.close()
