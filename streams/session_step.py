"""One step of the sessions fold for one message's spans of one session: price, fold, tag.

Shared by the live agent and by replay, so that replay yields the same records, versions and
health changes as the live worker did, message for message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from schemas.span import Span
from streams.health import HealthRules, health_tag
from streams.pricing import PriceBook
from streams.sessions import SessionState, fold_all, from_us, session_record


@dataclass(frozen=True)
class Step:
    record: dict[str, Any]  # for the `sessions` topic
    health_change: dict[str, Any] | None  # for the `health` topic: the latest change of tag
    changed: bool  # False: a redelivery, the state is as it was


def session_key(span: Span) -> bytes:
    # \x1f cannot appear in a project id (a UUID), so the key splits back unambiguously.
    return f"{span.project_id}\x1f{span.session_id}".encode()


_SESSION_OF = attrgetter("project_id", "session_id")


def by_session(spans: Iterable[Span]) -> dict[bytes, list[Span]]:
    # Grouped on the two ids, and each group's key encoded once: a message is mostly one
    # session, which one set of the id pairs, built in C, tells.
    spans = list(spans)
    if not spans:
        return {}
    if len(set(map(_SESSION_OF, spans))) == 1:
        return {session_key(spans[0]): spans}
    groups: dict[tuple[str, str], list[Span]] = {}
    for span in spans:
        fields = span.__dict__
        groups.setdefault((fields["project_id"], fields["session_id"]), []).append(span)
    return {session_key(group[0]): group for group in groups.values()}


def apply_spans(
    state: SessionState, spans: list[Span], book: PriceBook, rules: HealthRules, with_record: bool = True
) -> Step:
    """Folds `spans` into `state` (in place) and returns what to publish. When every span was
    seen before (a redelivery after a crash), it returns the latest record and health change
    again, unchanged: the crash may have come after the table's changelog write but before
    these were sent, and sending them twice is harmless since every store keeps one per version."""
    changed = fold_all(state, spans, book.price_span)
    if changed:
        tag = health_tag(state, rules)
        if tag != state.health_tag:
            state.previous_tag, state.health_tag = state.health_tag, tag
            state.tag_version, state.tag_at_us = state.version, state.last_us or 0
    # Replay wants only each session's last record, so it skips building the intermediate ones.
    record = session_record(state, state.health_tag) if with_record else {}
    change = None
    if state.tag_version:
        change = {"project_id": state.project_id, "session_id": state.session_id, "version": state.tag_version,
                  "health_tag": state.health_tag, "previous_tag": state.previous_tag,
                  "at": from_us(state.tag_at_us).isoformat(),
                  # Lets a reader of the health topic alone (the live feed's agent filter) tell whose session it is.
                  "agents": sorted(state.agents)}
    return Step(record, change, changed)


@dataclass
class BatchFold:
    """What folding a batch of messages gives: each session touched, once."""

    states: dict[bytes, SessionState]  # every session the batch touched, folded
    changed: set[bytes]  # the keys whose state changed: the table writes
    health_changes: list[tuple[bytes, dict[str, Any]]]  # in the order they happened


def fold_batch(messages: Iterable[list[Span]], load: Callable[[bytes], SessionState | None],
               book: PriceBook, rules: HealthRules) -> BatchFold:
    """Folds each message's spans with `apply_spans`, message by message, so the health changes
    are the ones a message-at-a-time fold (and replay) finds; but loads, writes and records each
    session once per batch. `load(key)` gives the stored state, or None for a new session."""
    folder = BatchFolder(load, book, rules)
    for spans in messages:
        folder.add(spans)
    return folder.result


class BatchFolder:
    """`fold_batch` a message at a time (streams/frame_step.py folds each message as soon as
    it is decoded); `result` is what fold_batch returns for the messages added so far."""

    def __init__(self, load: Callable[[bytes], SessionState | None], book: PriceBook, rules: HealthRules) -> None:
        self.load, self.book, self.rules = load, book, rules
        self.result = BatchFold({}, set(), [])
        self._published: set[tuple[bytes, int]] = set()

    def add(self, spans: list[Span]) -> None:
        result, published = self.result, self._published
        for key, group in by_session(spans).items():
            state = result.states.get(key)
            if state is None:
                state = self.load(key) or SessionState(group[0].project_id, group[0].session_id)
                result.states[key] = state
            step = apply_spans(state, group, self.book, self.rules, with_record=False)
            if step.changed:
                result.changed.add(key)
            change = step.health_change
            # A new change of tag, or (a redelivery) the latest one again.
            if change is not None and (not step.changed or change["version"] == state.version):
                if (key, change["version"]) not in published:
                    published.add((key, change["version"]))
                    result.health_changes.append((key, change))
