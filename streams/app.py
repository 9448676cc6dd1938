"""Declares the Faust app; topics, agents and sinks live in their own modules."""

from __future__ import annotations

import faust

from spanstream.settings import Settings


def create_faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        # A new consumer group starts from the oldest retained span: views are rebuilt from the log.
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.spans_partitions,
        # Topics are created by `spanstream` with their configs before the worker starts.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        producer_acks=-1,
    )
