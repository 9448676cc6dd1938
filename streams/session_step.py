"""One step of the sessions fold for one message's spans of one session: price, fold, tag.

Shared by the live agent and by replay, so that replay yields the same records, versions and
health changes as the live worker did, message for message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.span import Span
from streams.health import HealthRules, health_tag
from streams.pricing import PriceBook
from streams.sessions import SessionState, fold, session_record


@dataclass(frozen=True)
class Step:
    record: dict[str, Any]  # for the `sessions` topic
    health_change: dict[str, Any] | None  # for the `health` topic, when the tag changed


def session_key(span: Span) -> bytes:
    # \x1f cannot appear in a project id (a UUID), so the key splits back unambiguously.
    return f"{span.project_id}\x1f{span.session_id}".encode()


def by_session(spans: Iterable[Span]) -> dict[bytes, list[Span]]:
    groups: dict[bytes, list[Span]] = {}
    for span in spans:
        groups.setdefault(session_key(span), []).append(span)
    return groups


def apply_spans(state: SessionState, spans: list[Span], book: PriceBook, rules: HealthRules) -> Step | None:
    """Folds `spans` into `state` (in place); None when they were all seen before."""
    changed = False
    for span in spans:
        price = book.price_span(span)
        changed |= fold(state, span, price.nano_usd, price.priced)
    if not changed:
        return None
    tag, previous = health_tag(state, rules), state.health_tag
    state.health_tag = tag
    record = session_record(state, tag)
    change = None
    if tag != previous:
        change = {"project_id": state.project_id, "session_id": state.session_id, "version": state.version,
                  "health_tag": tag, "previous_tag": previous, "at": record["last_at"]}
    return Step(record, change)
