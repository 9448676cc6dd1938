"""Folding spans into sessions: pure, independent of arrival order, idempotent per span id.

Every aggregate is a sum, a count, a set, a min or a max, so a child before its parent, a late
span or a reshuffled partition gives the same session as in-order delivery. The one ordered
question (was a tool called N times *in a row*?) is answered from the tool calls sorted by
start time when the health tag is computed, never from the order they arrived in. A span id
seen before is ignored: a redelivered or retried span is counted once (the first copy wins).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from schemas.span import TOKEN_FIELDS, Span

_US = 1_000_000
_HOUR_US = 3600 * _US
FAILED = ("error", "timeout")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (moment - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return _EPOCH + us * _ONE_US


class ToolCall(NamedTuple):
    # A tuple: made once per tool span and sorted on every health verdict, where a frozen
    # dataclass's __init__ and __lt__ ran in Python.
    started_us: int
    span_id: str
    tool: str  # "server/tool"
    args_hash: str
    failed: bool


@dataclass
class SessionState:
    project_id: str
    session_id: str
    span_ids: set[str] = field(default_factory=set)
    first_us: int | None = None
    last_us: int | None = None
    spans: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    failed_calls: int = 0
    errors: int = 0
    timeouts: int = 0
    prevented: int = 0
    schema_drift: bool = False
    root_ended: bool = False
    agents: set[str] = field(default_factory=set)
    servers: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    tokens: list[int] = field(default_factory=lambda: [0] * len(TOKEN_FIELDS))
    cost_nano_usd: int = 0
    unpriced_calls: int = 0
    # agent -> [all tokens, nano-USD], for per-agent budgets
    agent_usage: dict[str, list[int]] = field(default_factory=dict)
    # (hour start µs, model, agent, server) -> [calls, *tokens, nano-USD]
    costs: dict[tuple[int, str, str, str], list[int]] = field(default_factory=dict)
    tool_history: list[ToolCall] = field(default_factory=list)
    version: int = 0
    # The tag last published, so that only changes go to the `health` topic, and that change
    # itself (previous tag, version, event time), to publish it again after a redelivery.
    health_tag: str = ""
    previous_tag: str = ""
    tag_version: int = 0
    tag_at_us: int = 0

    @property
    def total_tokens(self) -> int:
        # input includes cache reads and writes; output includes thinking (schemas/README.md)
        return self.tokens[0] + self.tokens[1]


def _args_hash(span: Span) -> str:
    return hashlib.blake2b((span.input_args or "").encode(), digest_size=8).hexdigest()


def fold(state: SessionState, span: Span, cost_nano_usd: int = 0, priced: bool = True) -> bool:
    """Adds `span` (priced by the caller) to `state`; returns whether anything changed. The
    plain statement of the fold: the agents run `fold_all`, its faster form, and
    tests/test_streams_sessions.py holds the two equal, so a rule changed in one fails there
    until it is changed in the other."""
    if span.span_id in state.span_ids:
        return False
    state.span_ids.add(span.span_id)
    started = to_us(span.started_at)
    ended = to_us(span.ended_at) if span.ended_at is not None else started
    state.first_us = started if state.first_us is None else min(state.first_us, started)
    state.last_us = ended if state.last_us is None else max(state.last_us, ended)
    state.spans += 1
    failed = span.status in FAILED
    if span.span_type == "llm":
        state.llm_calls += 1
    elif span.span_type == "tool_call":
        state.tool_calls += 1
        state.failed_calls += failed
        tool = f"{span.server_name or ''}/{span.tool_name or span.name}"
        state.tool_history.append(ToolCall(started, span.span_id, tool, _args_hash(span), failed))
    state.errors += span.status == "error"
    state.timeouts += span.status == "timeout"
    state.prevented += span.status == "prevented"
    state.schema_drift |= bool(span.attributes.get("schema_drift"))
    if span.parent_span_id is None and span.span_type == "agent" and span.ended_at is not None:
        state.root_ended = True
    for name, target in ((span.agent_name, state.agents), (span.server_name, state.servers), (span.model_id, state.models)):
        if name:
            target.add(name)
    counts = (span.input_tokens, span.output_tokens, span.cache_read_tokens, span.cache_creation_tokens,
              span.thinking_tokens)
    tokens = state.tokens
    tokens[0] += counts[0]
    tokens[1] += counts[1]
    tokens[2] += counts[2]
    tokens[3] += counts[3]
    tokens[4] += counts[4]
    state.cost_nano_usd += cost_nano_usd
    state.unpriced_calls += not priced
    if span.agent_name:
        usage = state.agent_usage.get(span.agent_name)
        if usage is None:
            usage = state.agent_usage[span.agent_name] = [0, 0]
        usage[0] += counts[0] + counts[1]
        usage[1] += cost_nano_usd
    key = (started - started % _HOUR_US, span.model_id or "", span.agent_name or "", span.server_name or "")
    cell = state.costs.get(key)
    if cell is None:
        cell = state.costs[key] = [0] * (len(TOKEN_FIELDS) + 2)
    cell[0] += 1
    cell[1] += counts[0]
    cell[2] += counts[1]
    cell[3] += counts[2]
    cell[4] += counts[3]
    cell[5] += counts[4]
    cell[6] += cost_nano_usd
    state.version += 1
    return True


class Priced(Protocol):
    nano_usd: int
    priced: bool


def fold_all(state: SessionState, spans: Iterable[Span], price: Callable[[Span], Priced]) -> bool:
    """`fold` of each span in turn, each new one priced by `price`: the very state that loop
    gives (tests/test_streams_sessions.py holds the two equal), at about half its cost. It is
    the fold's hot path (streams.session_step.apply_spans): the counters stay in locals for
    the whole run instead of an attribute write each per span."""
    ids, history = state.span_ids, state.tool_history
    agents, servers, models = state.agents, state.servers, state.models
    agent_usage, costs = state.agent_usage, state.costs
    first, last = state.first_us, state.last_us
    added = llm = tools = failed = errors = timeouts = prevented = unpriced = 0
    t_in = t_out = t_read = t_write = t_think = cost = 0
    drift, root_ended = state.schema_drift, state.root_ended
    blake2b, epoch, one_us, hour_us = hashlib.blake2b, _EPOCH, _ONE_US, _HOUR_US
    try:
        for span in spans:
            f = span.__dict__
            span_id = f["span_id"]
            if span_id in ids:
                continue
            charge = price(span)
            ids.add(span_id)
            added += 1
            nano = charge.nano_usd
            cost += nano
            if not charge.priced:
                unpriced += 1
            started = (f["started_at"] - epoch) // one_us
            ended_at = f["ended_at"]
            ended = started if ended_at is None else (ended_at - epoch) // one_us
            if first is None or started < first:
                first = started
            if last is None or ended > last:
                last = ended
            status, kind = f["status"], f["span_type"]
            server, agent, model = f["server_name"], f["agent_name"], f["model_id"]
            if status != "success":
                if status == "error":
                    errors += 1
                elif status == "timeout":
                    timeouts += 1
                elif status == "prevented":
                    prevented += 1
            if kind == "llm":
                llm += 1
            elif kind == "tool_call":
                tools += 1
                bad = status in FAILED
                failed += bad
                arguments = f["input_args"] or ""
                history.append(ToolCall(started, span_id, f"{server or ''}/{f['tool_name'] or f['name']}",
                                        blake2b(arguments.encode(), digest_size=8).hexdigest(), bad))
            elif kind == "agent" and f["parent_span_id"] is None and ended_at is not None:
                root_ended = True
            attributes = f["attributes"]
            if attributes and attributes.get("schema_drift"):
                drift = True
            if agent:
                agents.add(agent)
            if server:
                servers.add(server)
            if model:
                models.add(model)
            i, o, r, w, t = (f["input_tokens"], f["output_tokens"], f["cache_read_tokens"],
                             f["cache_creation_tokens"], f["thinking_tokens"])
            t_in += i
            t_out += o
            t_read += r
            t_write += w
            t_think += t
            if agent:
                usage = agent_usage.get(agent)
                if usage is None:
                    usage = agent_usage[agent] = [0, 0]
                usage[0] += i + o
                usage[1] += nano
            key = (started - started % hour_us, model or "", agent or "", server or "")
            cell = costs.get(key)
            if cell is None:
                costs[key] = [1, i, o, r, w, t, nano]
            else:
                cell[0] += 1
                cell[1] += i
                cell[2] += o
                cell[3] += r
                cell[4] += w
                cell[5] += t
                cell[6] += nano
    finally:
        # Also when `price` raised: what was folded before it stays folded, as with `fold`.
        if added:
            state.first_us, state.last_us = first, last
            state.spans += added
            state.llm_calls += llm
            state.tool_calls += tools
            state.failed_calls += failed
            state.errors += errors
            state.timeouts += timeouts
            state.prevented += prevented
            state.schema_drift, state.root_ended = drift, root_ended
            tokens = state.tokens
            tokens[0] += t_in
            tokens[1] += t_out
            tokens[2] += t_read
            tokens[3] += t_write
            tokens[4] += t_think
            state.cost_nano_usd += cost
            state.unpriced_calls += unpriced
            state.version += added
    return added > 0


def session_record(state: SessionState, health_tag: str) -> dict[str, Any]:
    """The JSON-ready `sessions` topic record (schemas.session.SessionRecord)."""
    first, last = state.first_us or 0, state.last_us or 0
    return {
        "project_id": state.project_id,
        "session_id": state.session_id,
        "version": state.version,
        "first_at": from_us(first).isoformat(),
        "last_at": from_us(last).isoformat(),
        "duration_ms": (last - first) / 1000,
        "spans": state.spans,
        "llm_calls": state.llm_calls,
        "tool_calls": state.tool_calls,
        "failed_calls": state.failed_calls,
        "errors": state.errors,
        "agents": sorted(state.agents),
        "servers": sorted(state.servers),
        "models": sorted(state.models),
        **dict(zip(TOKEN_FIELDS, state.tokens)),
        "cost_nano_usd": state.cost_nano_usd,
        "unpriced_calls": state.unpriced_calls,
        "health_tag": health_tag,
        "status": "closed" if state.root_ended else "open",
        "costs": [
            {
                "hour": from_us(hour).isoformat(), "model_id": model, "agent_name": agent, "server_name": server,
                "calls": cell[0], **dict(zip(TOKEN_FIELDS, cell[1:-1])), "cost_nano_usd": cell[-1],
            }
            for (hour, model, agent, server), cell in sorted(state.costs.items())
        ],
    }


def dump_state(state: SessionState) -> dict[str, Any]:
    """A JSON-ready form of the state, for the changelog-backed table."""
    return {
        "p": state.project_id, "s": state.session_id, "ids": sorted(state.span_ids),
        "f": state.first_us, "l": state.last_us,
        "n": [state.spans, state.llm_calls, state.tool_calls, state.failed_calls, state.errors,
              state.timeouts, state.prevented, int(state.schema_drift), int(state.root_ended),
              state.cost_nano_usd, state.unpriced_calls, state.version],
        "a": sorted(state.agents), "sv": sorted(state.servers), "m": sorted(state.models),
        "t": state.tokens, "au": state.agent_usage,
        "c": [[*key, *cell] for key, cell in state.costs.items()],
        "th": [[started, span_id, tool, args, int(failed)] for started, span_id, tool, args, failed in state.tool_history],
        "tag": [state.health_tag, state.previous_tag, state.tag_version, state.tag_at_us],
    }


def load_state(data: dict[str, Any]) -> SessionState:
    (spans, llm, tools, failed, errors, timeouts, prevented, drift, ended, cost, unpriced, version) = data["n"]
    return SessionState(
        project_id=data["p"], session_id=data["s"], span_ids=set(data["ids"]), first_us=data["f"],
        last_us=data["l"], spans=spans, llm_calls=llm, tool_calls=tools, failed_calls=failed, errors=errors,
        timeouts=timeouts, prevented=prevented, schema_drift=bool(drift), root_ended=bool(ended),
        agents=set(data["a"]), servers=set(data["sv"]), models=set(data["m"]), tokens=list(data["t"]),
        cost_nano_usd=cost, unpriced_calls=unpriced, agent_usage={k: list(v) for k, v in data["au"].items()},
        costs={tuple(row[:4]): list(row[4:]) for row in data["c"]},
        tool_history=[ToolCall(s, i, t, h, bool(f)) for s, i, t, h, f in data["th"]], version=version,
        health_tag=data["tag"][0], previous_tag=data["tag"][1], tag_version=data["tag"][2], tag_at_us=data["tag"][3],
    )
