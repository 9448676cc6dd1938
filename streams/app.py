"""Declares the Faust app; topics, agents and sinks live in their own modules."""

from __future__ import annotations

import faust
import faust.tables

from spanstream.settings import Settings
from streams.paced_fetch import PacedFetchTransport


class TableManager(faust.tables.TableManager):
    """Faust's own waits a fixed second before it subscribes to the changelogs and starts
    recovery. Every table here is declared before its worker starts (a later one is refused
    anyway), so that second only delayed each start, and each restart after a crash."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def create_faust_app(settings: Settings, app_id: str, datadir_name: str = "faust") -> faust.App:
    """`app_id` names the consumer group and the tables' changelog topics; `datadir_name` the
    directory of this process's local table store (two processes must not share one)."""
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # Tables live in RocksDB (through rocksdict) by default: a million open sessions do not
        # fit in memory. The changelog topic stays the source of truth either way.
        store=settings.table_store,
        datadir=str(settings.data_dir / datadir_name),
        # A new consumer group starts from the oldest retained span: views are rebuilt from the log.
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.spans_partitions,
        # Topics are created by `spanstream` with their configs before the worker starts.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        # A worker that died stays in the group until this passes, and its partitions wait for
        # it: 60 s (Faust's default) is a minute of nothing after a crash. Kafka's floor is 6 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        TableManager=TableManager,
    )
    # Set before anything declares a topic: the conductor takes the transport it finds then.
    app.transport = PacedFetchTransport(app.conf.broker_consumer, app)
    return app
