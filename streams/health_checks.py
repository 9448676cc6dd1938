"""The health-check sink: `health.checks` into ClickHouse, with each server's state in a
changelog-backed table from which schema drift and status changes are derived (written to
ClickHouse and published to `health.checks.events` for alerting).

Runs in the process that owns ClickHouse, next to the other sinks. A batch's rows are made
durable first and the table is written after: a crash in between redelivers the batch, the
table still holds the state before it, and the same events come out with the same keys (the
replacing tables collapse them). The pure fold is streams/health_check_state.py.
"""

from __future__ import annotations

import functools
import logging
import weakref
from datetime import datetime
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from schemas.health_check import STATUSES
from spanstream.clickhouse import ClickHouseStore
from spanstream.kafka import HEALTH_STATE_TABLE
from spanstream.settings import Settings
from streams.agents import _redelivered_on_error
from streams.health_check_state import observe
from streams.sink import ClickHouseWriter

log = logging.getLogger(__name__)

CHECK_COLUMNS = (
    "project_id", "server_name", "checked_at", "check_id", "server_id", "transport", "status", "latency_ms",
    "initialize_ms", "list_tools_ms", "tool_count", "tools_hash", "tool_names", "error", "server_version",
    "protocol_version", "prober",
)
EVENT_COLUMNS = (
    "project_id", "server_name", "at", "kind", "check_id", "previous_check_id", "status", "previous_status",
    "old_hash", "new_hash", "tools_added", "tools_removed", "tools_changed", "error",
)
LATEST_COLUMNS = (
    "project_id", "server_name", "checked_at", "check_id", "status", "latency_ms", "tool_count", "tools_hash",
    "error", "status_since", "last_up_at",
)
_REQUIRED = ("check_id", "project_id", "server_name", "status", "checked_at")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def check_row(check: dict[str, Any]) -> list:
    return [
        check["project_id"], check["server_name"], _time(check["checked_at"]), check["check_id"],
        check.get("server_id") or "", check.get("transport") or "", check["status"], check.get("latency_ms"),
        check.get("initialize_ms"), check.get("list_tools_ms"), check.get("tool_count"), check.get("tools_hash") or "",
        [tool["name"] for tool in check.get("tools") or []], check.get("error") or "",
        check.get("server_version") or "", check.get("protocol_version") or "", check.get("prober") or "",
    ]


def event_row(event: dict[str, Any]) -> list:
    return [
        event["project_id"], event["server_name"], _time(event["at"]), event["kind"], event["check_id"],
        event.get("previous_check_id") or "", event.get("status") or "", event.get("previous_status") or "",
        event.get("old_hash") or "", event.get("new_hash") or "", event.get("tools_added", []),
        event.get("tools_removed", []), event.get("tools_changed", []), event.get("error") or "",
    ]


def latest_row(check: dict[str, Any], last: dict[str, Any]) -> list:
    return [
        check["project_id"], check["server_name"], _time(last["checked_at"]), last["check_id"], last["status"],
        check.get("latency_ms"), check.get("tool_count"), check.get("tools_hash") or "", check.get("error") or "",
        _time(last["status_since"]), _time(last.get("last_up_at")),
    ]


def decode_check(value: bytes | None) -> dict[str, Any] | None:
    """A check record, or None for one this sink cannot read (logged and skipped: the prober is
    the only writer, and one bad record must not stop every server's history)."""
    try:
        check = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(check, dict) or any(not check.get(name) for name in _REQUIRED):
        return None
    if check["status"] not in STATUSES:
        return None
    try:
        _time(check["checked_at"])
    except (TypeError, ValueError):
        return None
    return check


def _in_event(event, write) -> None:
    # A table write goes to the changelog partition and the store of the *current* event, which
    # Faust takes from a context variable; these writes come after the batch's rows are durable,
    # outside the event that carried the check, so name that event for them.
    token = _current_event.set(weakref.ref(event))
    try:
        write()
    finally:
        _current_event.reset(token)


def register_health_check_agents(app: faust.App, settings: Settings, store: ClickHouseStore) -> None:
    """Checks history, drift and status-change events, and each server's latest state."""
    checks_topic = app.topic(settings.health_checks_topic, key_serializer="raw", value_serializer="raw")
    events_topic = app.topic(settings.health_check_events_topic, key_serializer="raw", value_serializer="raw")
    states = app.tables.add(faust.Table(
        app, name=HEALTH_STATE_TABLE, beacon=app.tables.beacon, partitions=settings.spans_partitions,
        key_type=bytes, value_type=bytes,
    ))
    history = ClickHouseWriter(store, "mcp_health_checks", CHECK_COLUMNS)
    events_out = ClickHouseWriter(store, "mcp_health_events", EVENT_COLUMNS)
    latest = ClickHouseWriter(store, "mcp_server_health", LATEST_COLUMNS)

    @app.agent(checks_topic, name="health-checks-to-clickhouse")
    @_redelivered_on_error
    async def health_checks_to_clickhouse(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.sink_batch_size, within=settings.sink_batch_seconds):
            changed: dict[bytes, tuple[dict, faust.EventT, dict]] = {}
            published: list[tuple[bytes, dict]] = []
            for event in batch:
                check = decode_check(event.value)
                if check is None:
                    message = event.message
                    log.warning("skipped an unreadable health check at %s[%d]@%d", message.topic, message.partition,
                                message.offset)
                    continue
                key = f"{check['project_id']}/{check['server_name']}".encode()
                if key in changed:
                    state = changed[key][0]
                else:
                    stored = states.get(key)
                    state = orjson.loads(stored) if stored else None
                new_state, derived = observe(state, check)
                history.add(check_row(check))
                for item in derived:
                    events_out.add(event_row(item))
                    published.append((key, item))
                if new_state is not state:
                    changed[key] = (new_state, event, check)
            for new_state, _, check in changed.values():
                latest.add(latest_row(check, new_state["last"]))
            await history.flush()
            await events_out.flush()
            await latest.flush()
            # Acknowledged before the table moves past them, like the rows: a redelivered batch
            # publishes them again (same check_id and kind), never loses them.
            deliveries = [await events_topic.send(key=key, value=orjson.dumps(item), force=True) for key, item in published]
            for delivery in deliveries:
                await delivery
            for key, (new_state, event, _) in changed.items():
                _in_event(event, functools.partial(states.__setitem__, key, orjson.dumps(new_state)))
