"""The names of the topics derived from `spans` and of the groups that read them, for every part
that reads or creates them (the stream processor, topic administration, the metrics endpoint):
here, so that none of them has to import another's package."""

from __future__ import annotations


def dead_letter_topic_name(source: str) -> str:
    return f"{source}.dlq"


def batches_topic_name(source: str) -> str:
    """The batcher's copy of `source`, partition for partition (streams/span_batches.py)."""
    return f"{source}.batches"


def rows_topic_name(source: str) -> str:
    """The fold's spans-table rows of `source` (spanstream/insert_bodies.py encode_span_rows)."""
    return f"{source}.rows"


def sink_group_name(worker_id: str, sink: str) -> str:
    """The consumer group of one ClickHouse sink (streams/view_sinks.py: spans, sessions, health)."""
    return f"{worker_id}-sink-{sink}"


def faust_sink_group_name(worker_id: str) -> str:
    """The Faust app of the process that owns ClickHouse (spanstream/serve.py): it read the
    sinks' topics before they left Faust, and still reads the health checks."""
    return f"{worker_id}-sink"
