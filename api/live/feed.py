"""The live feed of one API process: one reader of the derived topics, fanned out to every SSE client.

Each process reads every partition itself, from its own position (assigned, never a consumer
group, nothing committed), so any number of API processes each serve every event and need no
Redis between them. The reader runs on a thread (confluent-kafka) and hands the event loop one
batch per `live_flush_seconds` (further apart with many clients: WRITES_PER_SECOND); clients
with equal filters share a channel, so the work per event does not grow with the number of
clients, and each client gets one write per batch, made by the fan-out itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from api.live.events import EVENT_OF_TOPIC, LiveEvent, LiveFilter, message_items, sse_frame
from api.live.positions import ALL_CODES, Codes, Position, PositionTracker
from spanstream.metrics import SSE_CONNECTIONS, SSE_DROPPED
from spanstream.settings import Settings

log = logging.getLogger(__name__)

# Each batch costs one write to every client, ~40 CPU-µs each in this process at 1,000 clients
# (a send through uvicorn, most of it the kernel's loopback TCP) and as much in the client. The
# reader hands batches no more often than keeps the writes under this rate: `live_flush_seconds`
# apart up to 500 clients, 0.1 s at 1,000. At 1,000 clients a 0.05 s flush left the event loop
# short of CPU on two shared cores, which cost more latency than the longer wait (p99 1.9-2.5 s
# against 1.4 s at 0.1 s, docs/benchmarks.md).
WRITES_PER_SECOND = 10_000


@dataclass
class LiveFeedStats:
    """The feed's counters, in one place (GET /api/live/stats); clients and drops also go to
    Prometheus (spanstream_sse_connections, spanstream_sse_events_dropped_total)."""

    clients: int = 0  # connected now
    clients_rejected: int = 0  # turned away at the cap
    messages_read: int = 0  # messages fetched from Kafka, for anyone or no one
    events_read: int = 0  # events the reader found for a connected project
    events_sent: int = 0  # events handed to clients (one per client)
    sends: int = 0  # writes of events to clients: the feed's cost grows with these, not with events
    events_dropped: int = 0  # oldest events dropped from a slow client's full buffer
    events_resent: int = 0  # events read back for clients resuming with Last-Event-ID
    records_unreadable: int = 0


def topics_by_code(settings: Settings) -> dict[str, str]:
    return {"s": settings.spans_topic, "n": settings.sessions_topic, "h": settings.health_topic,
            "c": settings.health_checks_topic, "a": settings.alerts_topic}


def consumer_config(settings: Settings, **overrides) -> dict:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        # Required by the client but unused: partitions are assigned, no offset is committed.
        "group.id": f"spanstream-live-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 20,
        **overrides,
    }


def reader_fetch_config(settings: Settings) -> dict:
    """How the live reader fetches: the broker holds each fetch for a flush interval unless a
    megabyte is waiting, so the fetch is the flush timer. Fetching whatever had arrived (the
    default, a byte is enough) made a fetch per produce request, each a broker round trip: at
    a thousand spans a second that was about a fifth of a core of the broker's, on the cores
    the API process needs for its thousand clients."""
    return {"fetch.wait.max.ms": max(1, round(settings.live_flush_seconds * 1000)), "fetch.min.bytes": 1 << 20}


@dataclass(slots=True)
class Chunk:
    """Events of one fan-out for one channel, with their frames already joined: every client of
    the channel is handed the same bytes, so a thousand clients cost one join, not a thousand."""

    events: list[LiveEvent]
    data: bytes


class LiveClient:
    """One connected stream: its filter and its bounded buffer of events not yet sent."""

    def __init__(self, live_filter: LiveFilter, buffer: int, stats: LiveFeedStats) -> None:
        self.filter = live_filter
        self.codes = live_filter.codes  # the topics its ids name
        self.dropped = 0
        self.gone = False  # the client went away: its stream ends at the next wake
        self.start: Position | None = None  # the feed's position when this client joined
        self.last_sent = time.monotonic()
        self._capacity = buffer
        self._buffer: deque[Chunk] = deque()
        self._buffered = 0  # events in the buffer
        # A bare future per wait rather than an asyncio.Event: waking a thousand clients per
        # fan-out through Event.set was a tenth of the event loop's time.
        self._waiter: asyncio.Future | None = None
        self._joined: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._stats = stats
        # How the response writes this client's bytes (set by it), and whether the feed writes
        # them itself (`write_directly`). Waking a thousand tasks per batch, each to make one
        # send, was a fifth of the event loop's time; a send that does not have to wait (the
        # client keeps up) is made right away from the fan-out instead.
        self.writer: Callable[[bytes], Coroutine] | None = None
        self._direct = False
        self.sending = False  # a send is under way (the task's, or a direct one that had to wait)

    def write_directly(self) -> None:
        """From now on the feed sends what it hands this client itself (the stream has joined
        and caught up); the buffer holds only what arrives while a send has to wait."""
        self._direct = self.writer is not None

    def push(self, chunk: Chunk) -> None:
        if self._direct and not self.sending and not self._buffer:
            self._write(chunk)
            return
        self._buffer.append(chunk)
        self._buffered += len(chunk.events)
        overflow = self._buffered - self._capacity
        if overflow > 0:
            self._drop_oldest(overflow)
        self.wake()

    def _drop_oldest(self, count: int) -> None:
        self.dropped += count
        self._stats.events_dropped += count
        SSE_DROPPED.inc(count)
        self._buffered -= count
        while count:
            oldest = self._buffer[0]
            if len(oldest.events) <= count:
                self._buffer.popleft()
                count -= len(oldest.events)
            else:
                kept = oldest.events[count:]
                self._buffer[0] = Chunk(kept, b"".join(event.frames[self.codes] for event in kept))
                count = 0

    def _write(self, chunk: Chunk) -> None:
        self._stats.events_sent += len(chunk.events)
        self._stats.sends += 1
        self.last_sent = time.monotonic()
        send = self.writer(chunk.data)
        try:
            waiting_on = send.send(None)
        except StopIteration:
            return  # the usual case: written
        except Exception:  # noqa: BLE001 - the connection cannot take it: the stream ends
            self._direct = False
            self.went_away()
            return
        # The client's connection is full (it does not keep up): the rest of this send goes on
        # in a task, and what comes meanwhile is buffered, its oldest dropped past the buffer.
        self.sending = True
        asyncio.ensure_future(_finish_send(send, waiting_on)).add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future) -> None:
        self.sending = False
        if task.cancelled() or task.exception() is not None:
            self._direct = False
            self.went_away()
        elif self._buffer:
            self.wake()

    def went_away(self) -> None:
        self.gone = True
        self._direct = False
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Chunk]:
        """Everything buffered, waiting for something; [] when woken with nothing (time for a
        keepalive, or the feed is ending)."""
        if not self._buffer:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = list(self._buffer)
        self._buffer.clear()
        self._stats.events_sent += self._buffered
        self._stats.sends += bool(chunks)
        self._buffered = 0
        self.last_sent = time.monotonic()
        return chunks


@types.coroutine
def _continue(send: Coroutine, waiting_on):
    """The rest of a send that was started by hand and had to wait: what `yield from` does."""
    while True:
        try:
            resumed_with = yield waiting_on
        except BaseException as error:  # noqa: BLE001 - handed on to the send, as `yield from` would
            try:
                waiting_on = send.throw(error)
            except StopIteration:
                return
        else:
            try:
                waiting_on = send.send(resumed_with)
            except StopIteration:
                return


async def _finish_send(send: Coroutine, waiting_on) -> None:
    await _continue(send, waiting_on)


@dataclass
class _Channel:
    filter: LiveFilter
    clients: list[LiveClient] = field(default_factory=list)
    pending: list[LiveEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.codes = self.filter.codes


@dataclass
class _Batch:
    events: list[LiveEvent]
    projects: frozenset[str]  # the projects the reader decoded this batch for
    codesets: frozenset[Codes]  # the id topic sets it wrote frames for
    position: Position
    position_id: str
    unreadable: int


class LiveFeed:
    def __init__(self, settings: Settings) -> None:
        self.stats = LiveFeedStats()
        self.topics = topics_by_code(settings)
        self._settings = settings
        self._codes = {topic: code for code, topic in self.topics.items()}
        self._channels: dict[str, dict[LiveFilter, _Channel]] = {}
        self._joining: list[LiveClient] = []
        self._projects: dict[str, int] = {}
        # Read by the reader thread at each batch; replaced, never mutated, so it reads whole sets.
        self._project_set: frozenset[str] = frozenset()
        self._codes_used: dict[Codes, int] = {}
        self._codesets: frozenset[Codes] = frozenset()  # as _project_set
        self.position = Position({})
        self.position_id = ""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ending = False
        self._keepalive: asyncio.Task | None = None
        self._batches: deque[_Batch] = deque()
        self._slice = settings.live_client_buffer
        self._slice_at = 0
        # True while a batch is half handed out: the feed's position then is no client's.
        self.mid_batch = False

    async def start(self) -> LiveFeed:
        """Starts reading at the end of every partition: a client that names no Last-Event-ID
        gets events from the moment it connects. Kafka being down does not stop the API from
        starting (ingestion answers 503 meanwhile); the feed opens once Kafka answers."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="live-feed-reader", daemon=True)
        self._thread.start()
        self._keepalive = asyncio.create_task(self._wake_idle_clients())
        return self

    async def _wake_idle_clients(self) -> None:
        # One timer for all clients instead of a timeout per client and wait: the per-wait
        # timer was a tenth of the event loop's time with hundreds of clients.
        keepalive = self._settings.live_keepalive_seconds
        while True:
            await asyncio.sleep(min(1.0, keepalive / 4))
            idle_since = time.monotonic() - keepalive
            for channels in self._channels.values():
                for channel in channels.values():
                    for client in channel.clients:
                        if client.last_sent <= idle_since:
                            client.wake()

    def end_streams(self) -> None:
        """Ends every open stream: a server that is stopping waits for open responses, and an
        SSE response never ends by itself. Clients reconnect elsewhere with their last id."""
        self.ending = True
        for client in self._joining:
            client.wake()
        for channels in self._channels.values():
            for channel in channels.values():
                for client in channel.clients:
                    client.wake()

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def admit(self, live_filter: LiveFilter) -> LiveClient | None:
        """A new client, or None when the process already serves `live_max_clients`."""
        if self.stats.clients >= self._settings.live_max_clients:
            self.stats.clients_rejected += 1
            return None
        client = LiveClient(live_filter, self._settings.live_client_buffer, self.stats)
        self.stats.clients += 1
        SSE_CONNECTIONS.inc()
        project = live_filter.project_id
        self._projects[project] = self._projects.get(project, 0) + 1
        self._project_set = frozenset(self._projects)
        self._codes_used[client.codes] = self._codes_used.get(client.codes, 0) + 1
        self._codesets = frozenset(self._codes_used)
        self._joining.append(client)
        return client

    async def join(self, client: LiveClient, timeout: float = 10.0) -> Position:
        """Waits for the first batch the reader decoded with the client's project in mind; the
        client gets every event from there on, and the position before it is returned."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(client._joined)

    def leave(self, client: LiveClient) -> None:
        self.stats.clients -= 1
        SSE_CONNECTIONS.dec()
        project = client.filter.project_id
        if client in self._joining:
            self._joining.remove(client)
        channels = self._channels.get(project, {})
        channel = channels.get(client.filter)
        if channel is not None and client in channel.clients:
            channel.clients.remove(client)
            if not channel.clients:
                del channels[client.filter]
                if not channels:
                    del self._channels[project]
        self._projects[project] -= 1
        if not self._projects[project]:
            del self._projects[project]
        self._project_set = frozenset(self._projects)
        self._codes_used[client.codes] -= 1
        if not self._codes_used[client.codes]:
            del self._codes_used[client.codes]
        self._codesets = frozenset(self._codes_used)

    def _enqueue(self, batch: _Batch) -> None:
        self._batches.append(batch)
        if len(self._batches) == 1:
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        # Runs on the event loop, so joining, leaving and fan-out never interleave. Events go
        # out in slices of one client buffer, with the loop turning in between: a batch larger
        # than a buffer (after the reader was held up) then costs a client that took what it was
        # handed last turn nothing, while batches that queued up while the loop was busy go out
        # together, so a client wakes once for all of them. A turn costs a write per client
        # whatever it carries, so the slice bounds the feed's rate once it is behind: slices of
        # half a buffer kept a feed that fell behind from ever catching up.
        budget = self._slice
        touched: list[_Channel] = []
        while self._batches and budget > 0:
            batch = self._batches[0]
            if self._slice_at == 0:
                if self._joining:
                    self._push(touched)  # what came before the join is not the joiner's
                    self._admit_joining(batch)
                self.stats.events_read += len(batch.events)
                self.stats.records_unreadable += batch.unreadable
            end = min(len(batch.events), self._slice_at + budget)
            self._collect(batch.events[self._slice_at:end], touched)
            budget -= end - self._slice_at
            if end < len(batch.events):
                self._slice_at, self.mid_batch = end, True
                break
            self._batches.popleft()
            self._slice_at, self.mid_batch = 0, False
            self.position, self.position_id = batch.position, batch.position_id
        self._push(touched)
        if self._batches:
            self._loop.call_soon(self._dispatch)

    def _admit_joining(self, batch: _Batch) -> None:
        for client in [c for c in self._joining if c.filter.project_id in batch.projects and c.codes in batch.codesets]:
            self._joining.remove(client)
            client.start = self.position
            channels = self._channels.setdefault(client.filter.project_id, {})
            channels.setdefault(client.filter, _Channel(client.filter)).clients.append(client)
            if not client._joined.done():
                client._joined.set_result(self.position)

    def _collect(self, events: list[LiveEvent], touched: list[_Channel]) -> None:
        for event in events:
            for channel in self._channels.get(event.project_id, {}).values():
                if channel.filter.matches(event, event.kind):
                    if not channel.pending:
                        touched.append(channel)
                    channel.pending.append(event)

    @staticmethod
    def _push(touched: list[_Channel]) -> None:
        for channel in touched:
            codes = channel.codes
            chunk = Chunk(channel.pending, b"".join(event.frames[codes] for event in channel.pending))
            for client in channel.clients:
                client.push(chunk)
            channel.pending = []
        touched.clear()

    def _run(self) -> None:
        opened = None
        while opened is None and not self._stopping.is_set():
            try:
                opened = self._open()
            except KafkaException as error:
                log.warning("live feed: Kafka does not answer (%s); trying again in 2 s", error)
                self._stopping.wait(2)
        if opened is None:
            return
        consumer, tracker = opened
        # Before any batch: call_soon_threadsafe keeps the order.
        try:
            self._loop.call_soon_threadsafe(self._opened, tracker.position(), tracker.current_id())
        except RuntimeError:  # the loop closed while Kafka was being reached
            consumer.close()
            return
        self._read(consumer, tracker)

    def _opened(self, position: Position, position_id: str) -> None:
        self.position, self.position_id = position, position_id

    def _open(self) -> tuple[Consumer, PositionTracker]:
        consumer = Consumer(consumer_config(self._settings, **reader_fetch_config(self._settings)))
        try:
            return consumer, self._assign_ends(consumer)
        except KafkaException:
            consumer.close()
            raise

    def _assign_ends(self, consumer: Consumer) -> PositionTracker:
        """Assigns every partition of every relayed topic at its end; the tracker stands there.
        Partitions and topics added since the last call are read from now on."""
        metadata = consumer.list_topics(timeout=2)
        assignment, marks = [], {}
        for code, topic in self.topics.items():
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                log.warning("live feed: topic %s does not exist; its events are not relayed", topic)
                continue
            for partition in sorted(metadata.topics[topic].partitions):
                high = _end_offset(consumer, TopicPartition(topic, partition))
                assignment.append(TopicPartition(topic, partition, high))
                marks[(code, partition)] = (high, 0)
        consumer.assign(assignment)
        return PositionTracker(Position(marks))

    def _read(self, consumer: Consumer, tracker: PositionTracker) -> None:
        flush = self._settings.live_flush_seconds
        last_projects: frozenset[str] | None = None
        last_codesets: frozenset[Codes] | None = None
        reading = True  # _open assigned every partition
        handed = time.monotonic()
        try:
            while not self._stopping.is_set():
                if not self._project_set:
                    # Nobody is connected, so nothing read now would be anybody's: the reader
                    # stops fetching. Reading every derived topic for nobody cost the process that
                    # owns the store about a sixth of its throughput.
                    if reading:
                        consumer.unassign()
                        reading = False
                    self._stopping.wait(flush)
                    continue
                if not reading:
                    try:
                        tracker = self._assign_ends(consumer)
                    except KafkaException as error:
                        log.warning("live feed: Kafka does not answer (%s); trying again in 2 s", error)
                        self._stopping.wait(2)
                        continue
                    reading, last_projects = True, None
                    # The feed's position jumps to the ends before anyone is admitted: a joining
                    # client's start is then past what was skipped, never before it.
                    self._loop.call_soon_threadsafe(
                        self._enqueue, _Batch([], frozenset(), frozenset(), tracker.position(), tracker.current_id(), 0))
                try:
                    messages = self._next_batch(consumer, flush, handed + self.batch_interval())
                except KafkaException as error:
                    log.warning("live feed: reading failed (%s); retrying", error)
                    continue
                handed = time.monotonic()
                self.stats.messages_read += len(messages)
                projects, codesets = self._project_set, self._codesets
                if not messages and projects is last_projects and codesets is last_codesets:
                    continue
                last_projects, last_codesets = projects, codesets
                try:
                    events, unreadable = read_events(messages, self._codes, projects, tracker, codesets=codesets)
                except Exception:  # noqa: BLE001 - one bad batch must not end the feed
                    log.exception("live feed: a batch could not be read; its events are skipped")
                    events, unreadable = [], len(messages)
                    for message in messages:
                        if message.error() is None:
                            tracker.passed(self._codes[message.topic()], message.partition(), message.offset())
                batch = _Batch(events, projects, codesets, tracker.position(), tracker.current_id(), unreadable)
                self._loop.call_soon_threadsafe(self._enqueue, batch)
        except RuntimeError:  # the loop closed under us at shutdown
            pass
        finally:
            consumer.close()

    def batch_interval(self) -> float:
        """How far apart batches are handed to the clients (WRITES_PER_SECOND)."""
        return max(self._settings.live_flush_seconds, self.stats.clients / WRITES_PER_SECOND)

    def _next_batch(self, consumer: Consumer, flush: float, not_before: float) -> list:
        """What the next fetch brought, [] after `flush` seconds of nothing. The batch goes out
        as soon as a fetch answers (the broker held it for a flush interval, so waiting again
        here would add a second interval to every event's latency), but not before
        `not_before`: each batch costs a write to every client."""
        first = consumer.poll(flush)
        if first is None:
            return []
        pause = not_before - time.monotonic()
        if pause > 0:
            self._stopping.wait(pause)
        return [first, *consumer.consume(num_messages=4999, timeout=0)]


def _end_offset(consumer: Consumer, partition: TopicPartition, attempts: int = 40) -> int:
    # A topic created a moment ago has no leader yet for a second or two.
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)[1]
        except KafkaException:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def read_events(messages, codes: dict[str, str], projects, tracker: PositionTracker,
                live_filter: LiveFilter | None = None, skip: dict | None = None,
                codesets=(ALL_CODES,)) -> tuple[list[LiveEvent], int]:
    """Events of `messages` for `projects`, each with its id and a frame for each of `codesets`
    (the topic sets clients' ids name); the tracker moves past every message. `live_filter`
    keeps only what one client wants; `skip` maps a partition to the mark up to which its events
    were delivered already (the message a resumed id points into)."""
    events, unreadable = [], 0
    for message in messages:
        if message.error() is not None:
            continue
        code, partition, offset = codes[message.topic()], message.partition(), message.offset()
        kind = EVENT_OF_TOPIC[code]
        items, bad = message_items(code, message.value(), projects)
        unreadable += bad
        seen = skip.get((code, partition)) if skip else None
        for item in items:
            if seen is not None and (offset, item.index) < seen:
                continue
            if live_filter is not None and not live_filter.matches(item, kind):
                continue
            event_id = tracker.event_id(code, partition, offset, item.index, item.count)
            frames = {ids: sse_frame(kind, event_id if ids is ALL_CODES else tracker.current_id(ids), item.data)
                      for ids in codesets if code in ids}
            events.append(LiveEvent(kind, item.project_id, item.session_id, item.agents, event_id, code,
                                    partition, offset, item.index, item.count, item.data, frames))
        tracker.passed(code, partition, offset)
    return events, unreadable
