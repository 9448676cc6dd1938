"""The alert engine one API process runs: reads health records, evaluates SLO and cost rules on an
interval, sends due webhooks, repeats and wakes incidents. Any number may run (docs/alerts.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from api.alerts import events
from api.alerts.feed import AlertFeed
from api.alerts.webhooks import send
from api.repositories import alert_deliveries, alerts
from api.repositories.slo_status import read_slo
from spanstream.clickhouse import ClickHouseStore
from spanstream.settings import Settings

log = logging.getLogger(__name__)
# Postgres or ClickHouse not answering: the work is retried, never dropped.
_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
              asyncpg.TooManyConnectionsError)
# Any constant works; every engine of this database takes the same one for an evaluation round.
_EVALUATION_LOCK = 0x414C5254
_STOPPED = object()


class AlertEngine:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, store: ClickHouseStore | None, feed: AlertFeed) -> None:
        self._settings = settings
        self._pool = pool
        self._store = store
        self._feed = feed
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._client: httpx.AsyncClient | None = None
        # Set once the consumer holds its partitions (tests wait for it before producing).
        self.assigned = asyncio.Event()
        self._rules: dict[tuple, tuple[float, list]] = {}

    async def __aenter__(self) -> AlertEngine:
        self._client = httpx.AsyncClient(timeout=self._settings.alerts_webhook_timeout_seconds, follow_redirects=False)
        self._tasks = [asyncio.create_task(self._consume(), name="alerts-consume"),
                       asyncio.create_task(self._dispatch(), name="alerts-dispatch")]
        if self._store is not None:  # an ingestion-only process has no ClickHouse to evaluate against
            self._tasks.append(asyncio.create_task(self._evaluate(), name="alerts-evaluate"))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        # Each loop finishes the round it is in: cancelling one mid-query (or mid-connect) would
        # leave asyncpg's half-open connections behind, and a webhook sent but not recorded.
        self._stopping.set()
        self._wake.set()
        done, pending = await asyncio.wait(self._tasks, timeout=self._settings.alerts_webhook_timeout_seconds + 5)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Something new is due (a person resolved an incident): send it now, not at the next poll."""
        self._wake.set()

    # -- health records ------------------------------------------------------------------------

    async def _consume(self) -> None:
        settings = self._settings
        topics = (settings.health_topic, settings.health_checks_topic)
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *topics, bootstrap_servers=settings.kafka_bootstrap, group_id=settings.alerts_consumer_group,
                enable_auto_commit=False, auto_offset_reset="earliest", client_id="spanstream-alerts",
                # Held at the broker for a mebibyte or a quarter second: answered at once, a
                # busy pipeline's health records meant ~65 fetches and as many commits a second.
                fetch_min_bytes=1 << 20, fetch_max_wait_ms=250,
            )
            try:
                # start() waits for the topics to exist (a fresh deployment before `migrate`).
                if await self._unless_stopping(consumer.start()) is not _STOPPED:
                    await self._consume_with(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker went away; start over from the committed offsets
                log.warning("alert consumer: %s; reconnecting", error)
                await self._pause(2)
            finally:
                self.assigned.clear()
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _unless_stopping(self, awaitable):
        """Awaits a Kafka call, given up when the engine stops; only for calls that touch no
        PostgreSQL state, since they may be cancelled."""
        call, stop = asyncio.ensure_future(awaitable), asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
            return _STOPPED
        return call.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _consume_with(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            batch = await self._unless_stopping(consumer.getmany(timeout_ms=500, max_records=500))
            if batch is _STOPPED:
                return
            if consumer.assignment():
                self.assigned.set()
            for messages in batch.values():
                for message in messages:
                    if self._stopping.is_set():
                        return  # uncommitted: the group's next holder sees it, PostgreSQL dedups
                    try:
                        await self._until_done(self._handle, message)
                    except Exception:  # a bug must not wedge every later alert behind this record
                        log.exception("alert engine skipped %s@%d", message.topic, message.offset)
            if batch:
                try:
                    await consumer.commit()
                except (CommitFailedError, KafkaError) as error:
                    # A rebalance moved the partitions: whoever has them now sees these records
                    # again, and PostgreSQL keeps that from firing twice.
                    log.info("alert consumer commit: %s", error)

    async def _until_done(self, handle, *args) -> None:
        while True:
            try:
                return await handle(*args)
            except _TRANSIENT as error:
                if self._stopping.is_set():
                    raise
                log.warning("alert engine: %s; retrying", error)
                await self._pause(1)

    async def _handle(self, message) -> None:
        if message.value is None or (time.time() - message.timestamp / 1000) > self._settings.alerts_max_event_age_seconds:
            return
        if message.topic == self._settings.health_topic:
            change = events.parse_health_change(message.value)
            if change is not None:
                await self._session_tagged(change)
        else:
            check = events.parse_health_check(message.value)
            if check is not None:
                await self._server_checked(check)

    async def _rules_of_kind(self, project_id, kinds: tuple[str, ...]) -> list:
        # A busy pipeline sends a health record per tag change: one PostgreSQL query each would
        # cost the process that serves the API a tenth of a core. A rule written a moment ago
        # is seen within alerts_rules_cache_seconds.
        key, now = (project_id, kinds), time.monotonic()
        cached = self._rules.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        rules = await alerts.rules_of_kind(self._pool, project_id, kinds)
        if len(self._rules) > 10_000:
            self._rules.clear()
        self._rules[key] = (now + self._settings.alerts_rules_cache_seconds, rules)
        return rules

    async def _session_tagged(self, change: events.SessionTagged) -> None:
        for rule in await self._rules_of_kind(change.project_id, ("session_tagged",)):
            tags = rule["tags"] or ()
            if change.previous_tag in tags and change.previous_tag != change.health_tag:
                # The tag that fired is no longer the session's (a retry succeeded, a later span
                # outranked it): the condition is over, as a server that answers again is.
                await self._resolve(rule, events.session_key(change.session_id, change.previous_tag),
                                    f"session now tagged {change.health_tag}")
            if change.health_tag in tags:
                await self._open(rule, events.session_opening(change))

    async def _server_checked(self, check: events.ServerChecked) -> None:
        newer, previous = await alerts.remember_server_status(
            self._pool, check.project_id, check.server_name, check.status, check.checked_at)
        if not newer:
            return
        rules = [rule for rule in await self._rules_of_kind(
            check.project_id, ("mcp_server_down", "mcp_server_recovered"))
            if events.rule_watches_server(rule, check.server_name)]
        for rule in rules:
            if rule["kind"] == "mcp_server_down":
                if check.status == "down":
                    await self._open(rule, events.server_down_opening(check))
                else:
                    await self._resolve(rule, events.server_key(check.server_name), f"server answered: {check.status}")
            elif check.status != "down" and previous == "down":
                await self._open(rule, events.server_recovered_opening(check))

    # -- SLO and cost rules --------------------------------------------------------------------

    async def _evaluate(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._evaluation_round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("alert evaluation: %s", error)
            await self._pause(self._settings.alerts_evaluate_seconds)

    async def _evaluation_round(self) -> None:
        async with self._pool.acquire() as connection:
            # One engine evaluates at a time: the rest would only find the same incidents open.
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _EVALUATION_LOCK):
                return
            try:
                rules = await alerts.rules_of_kind(self._pool, None, ("slo_breached", "cost_budget_crossed"))
                slos = await self._slos([rule["slo_id"] for rule in rules if rule["slo_id"] is not None])
                for rule in rules:
                    if self._stopping.is_set():
                        break
                    await self._evaluate_rule(rule, slos)
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _EVALUATION_LOCK)

    async def _slos(self, ids: list) -> dict:
        rows = await self._pool.fetch("SELECT id, name, kind, agent_name, target, window_hours FROM slos WHERE id = ANY($1::uuid[])", ids)
        return {row["id"]: dict(row) for row in rows}

    async def _evaluate_rule(self, rule: dict, slos: dict) -> None:
        incomplete_after = self._settings.incomplete_after_seconds
        if rule["kind"] == "slo_breached":
            slo = slos.get(rule["slo_id"])
            if slo is None:
                return
            reading = await read_slo(self._store, str(rule["project_id"]), slo, incomplete_after)
            key = events.slo_key(slo["id"])
            summary = (f"SLO {slo['name']} breached: {reading.value:.6g} against target {slo['target']:g}"
                       if reading.value is not None else "")
            details = {"slo_id": slo["id"], "slo_name": slo["name"], "slo_kind": slo["kind"], "target": slo["target"],
                       "window_hours": slo["window_hours"]}
        else:
            budget = float(rule["budget_usd"])
            # The SLO code's cost reading is the project's cost over the window: reuse it.
            slo = {"kind": "cost_budget", "target": budget, "window_hours": rule["window_hours"], "agent_name": None}
            reading = await read_slo(self._store, str(rule["project_id"]), slo, incomplete_after)
            key = events.cost_key(rule)
            summary = f"cost over the last {rule['window_hours']} h is {reading.value:.6f} USD, budget {budget} USD" \
                if reading.value is not None else ""
            details = {"budget_usd": budget, "window_hours": rule["window_hours"]}
        if reading.state == "breached":
            details = {**details, "value": reading.value, "sample": reading.sample}
            await self._open(rule, events.Opening(key, summary, {k: str(v) if k == "slo_id" else v
                                                                 for k, v in details.items()}))
        elif reading.state == "ok" or rule["kind"] == "cost_budget_crossed":
            # No cost at all is under budget; an SLO with no data is left as it was.
            await self._resolve(rule, key, f"back within target: {reading.value}")

    # -- incidents and their webhooks ----------------------------------------------------------

    async def _open(self, rule: dict, opening: events.Opening) -> None:
        row = await alerts.open_incident(self._pool, rule, opening, self._settings.alerts_repeat_seconds)
        if row is not None:
            self._feed.publish(row, "fired")
            if row["state"] == "resolved":
                self._feed.publish(row, "resolved", "auto")
            self.wake()

    async def _resolve(self, rule: dict, key: str, reason: str) -> None:
        row = await alerts.resolve_condition(self._pool, rule["id"], key, reason)
        if row is not None:
            self._feed.publish(row, "resolved", "auto")
            self.wake()

    async def _dispatch(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._dispatch_round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("alert dispatch: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.alerts_poll_seconds)
            self._wake.clear()

    async def _dispatch_round(self) -> None:
        settings = self._settings
        for row, was in await alerts.claim_due_repeats(self._pool, settings.alerts_repeat_seconds):
            self._feed.publish(row, {"snoozed": "unsnoozed", "new": "fired"}.get(was, "repeated"))
        # A crashed sender's claim expires after the longest a send may take, plus a margin.
        lease = settings.alerts_webhook_timeout_seconds + 30
        while not self._stopping.is_set() and (due := await alert_deliveries.claim_due(self._pool, lease)):
            await asyncio.gather(*(self._deliver(delivery) for delivery in due))

    async def _deliver(self, delivery: alert_deliveries.DueDelivery) -> None:
        settings = self._settings
        attempt = await send(self._client, delivery, settings.alerts_webhook_max_attempts,
                             settings.alerts_retry_base_seconds)
        if attempt.error is None:
            await self._until_done(alert_deliveries.delivered, self._pool, delivery.id, attempt.status)
        else:
            log.info("webhook %s attempt %d: %s", delivery.id, delivery.attempts, attempt.error)
            await self._until_done(alert_deliveries.failed_attempt, self._pool, delivery.id, attempt.status,
                                   attempt.error, attempt.retry_in)
