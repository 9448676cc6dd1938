"""Seeded agent sessions whose every user-visible outcome is known, and a hostile plan to deliver them.

What a user should see of each session (counts, sets, tokens, cost, times, status, health tag) is
worked out from what the generator chose to build, with its own copy of the seeded prices and its
own reading of the health rules: nothing here calls `streams/`, so a bug there cannot hide in both
the answer and the result. Token counts follow schemas/README.md: `input_tokens` includes the cache
reads and writes, `output_tokens` includes thinking.

Every health tag is planted on purpose except two: `budget_exceeded` (budgets cannot be configured
from settings yet) and `incomplete` (the worker does not judge sessions by event time yet).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from schemas.span import Span, encode_span, encode_spans

TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "thinking_tokens")
MILLION, NANO = Decimal(10**6), Decimal(10**9)
# The tags this generator plants, highest priority first (docs/health-tags.md).
PLANTED_TAGS = ("loop_detected", "circuit_breaker_open", "schema_drift", "timeout", "tool_failure",
                "success_with_fallback", "success")
WORDS = ("refund policy", "invoice 2024-118", "oauth callback", "kafka consumer lag", "gdpr export", "sso setup")


@dataclass(frozen=True)
class Price:
    """A model's list prices in USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_creation: Decimal
    thinking: Decimal


# Copies of the rows seeded by migrations/postgres/0002_model_pricing.sql, all in force since 2025.
PRICES = {
    "claude-sonnet-4-5": Price(*map(Decimal, ("3", "15", "0.30", "3.75", "15"))),
    "claude-haiku-4-5": Price(*map(Decimal, ("1", "5", "0.10", "1.25", "5"))),
    "gpt-4o-mini": Price(*map(Decimal, ("0.15", "0.60", "0.075", "0.15", "0.60"))),
}
UNKNOWN_MODEL = "acme-llm-7b"
# The model ids producers send, and the row each is charged at (docs/pricing.md); None: no row.
MODEL_ROWS = {
    "claude-sonnet-4-5": "claude-sonnet-4-5",
    "anthropic/claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
    "claude-haiku-4-5": "claude-haiku-4-5",
    "gpt-4o-mini": "gpt-4o-mini",
    "openai/gpt-4o-mini-2024-07-18": "gpt-4o-mini",
    UNKNOWN_MODEL: None,
}


def span_cost(span: Span, fallback_nano_usd: int) -> tuple[int, bool]:
    """(nano-USD, priced) of one span, by the arithmetic of docs/pricing.md."""
    counts = [getattr(span, name) for name in TOKENS]
    row = MODEL_ROWS[span.model_id] if span.model_id else None
    if row is None:
        return (fallback_nano_usd, False) if span.model_id or any(counts) else (0, True)
    price = PRICES[row]
    uncached_input = span.input_tokens - span.cache_read_tokens - span.cache_creation_tokens
    usd = (uncached_input * price.input + span.cache_read_tokens * price.cache_read
           + span.cache_creation_tokens * price.cache_creation
           + (span.output_tokens - span.thinking_tokens) * price.output
           + span.thinking_tokens * price.thinking) / MILLION
    return int((usd * NANO).to_integral_value(ROUND_HALF_EVEN)), True


@dataclass(frozen=True)
class Agent:
    name: str
    models: tuple[str, ...]
    tools: tuple[tuple[str, str], ...]  # (MCP server, tool)
    thinking: bool


AGENTS = (
    Agent("support-agent", ("claude-sonnet-4-5", "anthropic/claude-sonnet-4-5-20250929", "claude-haiku-4-5"),
          (("docs-mcp", "search_docs"), ("docs-mcp", "get_article"), ("crm-mcp", "lookup_customer"),
           ("crm-mcp", "create_ticket")), False),
    Agent("coding-agent", ("claude-sonnet-4-5", "claude-haiku-4-5"),
          (("github-mcp", "search_code"), ("filesystem-mcp", "read_file"), ("filesystem-mcp", "write_file")), True),
    Agent("research-agent", ("gpt-4o-mini", "openai/gpt-4o-mini-2024-07-18"),
          (("web-search-mcp", "search"), ("web-search-mcp", "fetch_url")), False),
)
# Handed off to: shares crm-mcp/lookup_customer with the support agent.
SUB_AGENT = Agent("billing-agent", ("gpt-4o-mini",),
                  (("billing-mcp", "get_invoice"), ("crm-mcp", "lookup_customer")), False)
_ERRORS = {"error": "upstream returned 502 Bad Gateway", "timeout": "call exceeded its 30s deadline",
           "prevented": "circuit breaker open: 5 failures in 60s"}


class _Session:
    """Builds one session's spans on a clock that only moves forward, so start times never tie.
    Arguments are unique per call unless a step repeats them on purpose: no loop by accident."""

    def __init__(self, rng: random.Random, project_id: str, session_id: str, opened: datetime) -> None:
        self.rng, self.session_id, self.opened = rng, session_id, opened
        self.common = {"project_id": project_id, "session_id": session_id, "trace_id": f"trace-{session_id}"}
        self.root_id = f"{session_id}:root"
        self.clock = opened + timedelta(milliseconds=rng.uniform(2, 20))
        self.spans: list[Span] = []
        self.late: set[str] = set()  # delivered after the rest of the session
        self.resent: set[str] = set()  # delivered twice
        self.context, self.cached, self.calls = rng.randint(1500, 9000), 0, 0

    def add(self, parent: str | None, low_ms: float = 3, high_ms: float = 1500, running: bool = False,
            **fields: Any) -> Span:
        started = self.clock + timedelta(microseconds=self.rng.randint(200, 4000))
        self.clock = started + timedelta(microseconds=int(self.rng.uniform(low_ms, high_ms) * 1000))
        span = Span(**self.common, span_id=f"{self.session_id}:{len(self.spans) + 1:03d}", parent_span_id=parent,
                    started_at=started, ended_at=None if running else self.clock, **fields)
        self.spans.append(span)
        return span

    def llm(self, agent: Agent, parent: str, status: str = "success", model: str | None = None,
            running: bool = False) -> Span:
        model = model or self.rng.choice(agent.models)
        usage: dict[str, int] = {}
        if status == "success" and not running:
            prompt, anthropic = self.context, "claude" in model
            if anthropic:  # reads the previous prompt from the cache, writes all but a few new tokens
                read = min(self.cached, prompt)
                creation = max(prompt - read - self.rng.randint(1, 12), 0)
            else:  # reads cached 128-token blocks of prompts over 1024 tokens, never writes
                read, creation = (min(self.cached, prompt) // 128 * 128 if prompt >= 1024 else 0), 0
            visible = self.rng.randint(40, 400)
            thinking = self.rng.randint(100, 3000) if agent.thinking and anthropic else 0
            usage = {"input_tokens": prompt, "cache_read_tokens": read, "cache_creation_tokens": creation,
                     "output_tokens": visible + thinking, "thinking_tokens": thinking}
            self.cached, self.context = prompt, prompt + visible + self.rng.randint(20, 400)
        return self.add(parent, 300, 60_000 if status == "timeout" else 9000, running, span_type="llm",
                        name=f"chat {model}", agent_name=agent.name, model_id=model, status=status,
                        error=_ERRORS.get(status), **usage)

    def tool(self, agent: Agent, parent: str, tool: tuple[str, str], args: dict | None = None,
             status: str = "success", **fields: Any) -> Span:
        self.calls += 1
        server, name = tool
        failed = status != "success"
        return self.add(parent, 30_000 if status == "timeout" else 3, 30_050 if status == "timeout" else 1500,
                        span_type="tool_call", name=name, server_name=server, tool_name=name, agent_name=agent.name,
                        input_args=args or {"q": self.rng.choice(WORDS), "call": self.calls}, status=status,
                        error=_ERRORS.get(status), output_result=None if failed else {"ok": True, "n": self.calls},
                        **fields)

    def other_tool(self, agent: Agent, tool: tuple[str, str]) -> tuple[str, str]:
        return self.rng.choice([t for t in agent.tools if t != tool])

    # Steps: each is called with the session's agent and the span its calls hang under.
    def turn(self, agent: Agent, parent: str) -> None:
        self.llm(agent, parent)
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            self.tool(agent, parent, self.rng.choice(agent.tools))

    def loop(self, agent: Agent, parent: str) -> None:
        tool, args = self.rng.choice(agent.tools), {"q": self.rng.choice(WORDS), "page": 1}
        calls = [self.tool(agent, parent, tool, args), self.tool(agent, parent, tool, args)]
        if self.rng.random() < 0.5:
            self.llm(agent, parent)  # not a tool call: does not break the run
        calls.append(self.tool(agent, parent, tool, args))
        self.late.add(self.rng.choice(calls).span_id)  # the loop shows only once the last piece arrives

    def circuit_breaker(self, agent: Agent, parent: str) -> None:
        self.tool(agent, parent, self.rng.choice(agent.tools), status="prevented")

    def schema_drift(self, agent: Agent, parent: str) -> None:
        self.tool(agent, parent, self.rng.choice(agent.tools), attributes={"schema_drift": True, "changed": ["q"]})

    def timeout(self, agent: Agent, parent: str) -> None:
        if self.rng.random() < 0.5:
            self.tool(agent, parent, self.rng.choice(agent.tools), status="timeout")
        else:
            self.llm(agent, parent, status="timeout")

    def tool_failure(self, agent: Agent, parent: str) -> None:
        # Always the session's last tool call, so the failure is its tool's latest call; the earlier
        # success of the same tool arrives after it.
        tool = self.rng.choice(agent.tools)
        self.late.add(self.tool(agent, parent, tool).span_id)
        self.tool(agent, parent, tool, status="error")

    def fallback(self, agent: Agent, parent: str) -> None:
        tool = self.rng.choice(agent.tools)
        calls = (self.tool(agent, parent, tool, status="error"), self.tool(agent, parent, tool))
        self.late.add(self.rng.choice(calls).span_id)

    # Traps: things that must NOT change the tag or the counts.
    def near_loop(self, agent: Agent, parent: str) -> None:
        """The same call three times, but another tool call started between the 2nd and 3rd: it
        arrives last, and the 2nd is delivered twice, so by arrival the same call comes 4 times in a row."""
        tool, args = self.rng.choice(agent.tools), {"q": self.rng.choice(WORDS), "page": 2}
        self.tool(agent, parent, tool, args)
        self.resent.add(self.tool(agent, parent, tool, args).span_id)
        self.late.add(self.tool(agent, parent, self.other_tool(agent, tool)).span_id)
        self.tool(agent, parent, tool, args)

    def handoff(self, agent: Agent, parent: str) -> None:
        self.add(parent, 1, 5, span_type="handoff", name=f"handoff to {SUB_AGENT.name}", agent_name=agent.name,
                 target_agent_name=SUB_AGENT.name)
        sub_id, started = f"{self.session_id}:sub", self.clock + timedelta(microseconds=150)
        self.clock = started
        for _ in range(self.rng.randint(1, 2)):
            self.turn(SUB_AGENT, sub_id)
        self.clock += timedelta(milliseconds=self.rng.uniform(1, 30))
        # An agent span that ends but has a parent: it must not close the session.
        self.spans.append(Span(**self.common, span_id=sub_id, parent_span_id=parent, span_type="agent",
                               name=SUB_AGENT.name, agent_name=SUB_AGENT.name, started_at=started, ended_at=self.clock))

    def failed_llm(self, agent: Agent, parent: str) -> None:
        self.llm(agent, parent, status="error")  # an error, but not a failed tool call

    def unpriced(self, agent: Agent, parent: str) -> None:
        if self.rng.random() < 0.5:
            self.llm(agent, parent, model=UNKNOWN_MODEL)
        else:  # tokens without a model
            self.add(parent, 5, 80, span_type="embedding", name="embed query", agent_name=agent.name,
                     input_tokens=self.rng.randint(50, 800))

    def no_drift(self, agent: Agent, parent: str) -> None:
        self.tool(agent, parent, self.rng.choice(agent.tools), attributes={"schema_drift": False})


_Step = Callable[[_Session, Agent, str], None]
# tool_failure is not here: it is always the session's last step.
_PLANT: dict[str, _Step] = {
    "loop_detected": _Session.loop, "circuit_breaker_open": _Session.circuit_breaker,
    "schema_drift": _Session.schema_drift, "timeout": _Session.timeout, "success_with_fallback": _Session.fallback,
}
_TRAPS: tuple[_Step, ...] = (_Session.near_loop, _Session.handoff, _Session.failed_llm, _Session.unpriced,
                             _Session.no_drift)


@dataclass(frozen=True)
class ExpectedSession:
    """A session as GET /api/agents/sessions/{id} should show it."""

    project_id: str
    session_id: str
    spans: int
    llm_calls: int
    tool_calls: int
    failed_calls: int
    errors: int
    agents: list[str]
    servers: list[str]
    models: list[str]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking_tokens: int
    cost_nano_usd: int
    unpriced_calls: int
    first_at: datetime
    last_at: datetime
    duration_ms: float
    status: str
    health_tag: str
    costs: list[dict[str, Any]]  # by (hour, model_id, agent_name, server_name)

    def differences(self, found: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """{field: (expected, found)} for an API session; `costs` only if `found` has them."""
        diffs = {}
        for name, want in vars(self).items():
            if name in ("project_id", "session_id") or (name == "costs" and "costs" not in found):
                continue
            got = found.get(name)
            if name in ("first_at", "last_at") and isinstance(got, str):
                got = datetime.fromisoformat(got)
            elif name == "costs":
                got = sorted(({**cell, "hour": datetime.fromisoformat(cell["hour"])} for cell in got), key=_cell_key)
            if got != want:
                diffs[name] = (want, got)
        return diffs


def _cell_key(cell: dict[str, Any]) -> tuple:
    return cell["hour"], cell["model_id"], cell["agent_name"], cell["server_name"]


def _expect(session: _Session, closed: bool, tag: str, fallback_nano_usd: int) -> ExpectedSession:
    spans = session.spans
    first = min(span.started_at for span in spans)
    last = max(span.ended_at or span.started_at for span in spans)
    cells: dict[tuple, dict[str, Any]] = {}
    cost = unpriced = 0
    for span in spans:
        nano, priced = span_cost(span, fallback_nano_usd)
        cost, unpriced = cost + nano, unpriced + (not priced)
        hour = span.started_at.replace(minute=0, second=0, microsecond=0)
        key = (hour, span.model_id or "", span.agent_name or "", span.server_name or "")
        cell = cells.setdefault(key, dict(zip(("hour", "model_id", "agent_name", "server_name"), key),
                                          calls=0, cost_nano_usd=0, **dict.fromkeys(TOKENS, 0)))
        cell["calls"] += 1
        cell["cost_nano_usd"] += nano
        for name in TOKENS:
            cell[name] += getattr(span, name)
    tools = [span for span in spans if span.span_type == "tool_call"]
    return ExpectedSession(
        project_id=session.common["project_id"], session_id=session.session_id, spans=len(spans),
        llm_calls=sum(span.span_type == "llm" for span in spans), tool_calls=len(tools),
        failed_calls=sum(span.status in ("error", "timeout") for span in tools),
        errors=sum(span.status == "error" for span in spans),
        agents=sorted({span.agent_name for span in spans if span.agent_name}),
        servers=sorted({span.server_name for span in spans if span.server_name}),
        models=sorted({span.model_id for span in spans if span.model_id}),
        **{name: sum(getattr(span, name) for span in spans) for name in TOKENS},
        cost_nano_usd=cost, unpriced_calls=unpriced, first_at=first, last_at=last,
        duration_ms=((last - first) // timedelta(microseconds=1)) / 1000, status="closed" if closed else "open",
        health_tag=tag, costs=sorted(cells.values(), key=_cell_key),
    )


def _build_session(rng: random.Random, project_id: str, session_id: str, opened: datetime, tag: str,
                   fallback_nano_usd: int) -> tuple[_Session, ExpectedSession]:
    session, agent = _Session(rng, project_id, session_id, opened), rng.choice(AGENTS)
    # The target tag, plus some lower-priority conditions that must not outrank it.
    planted = [name for name in PLANTED_TAGS[PLANTED_TAGS.index(tag) + 1:-1] if rng.random() < 0.25]
    planted += [tag] if tag != "success" else []
    steps = [_Session.turn] * rng.randint(1, 4) + [_PLANT[name] for name in planted if name in _PLANT]
    steps += [trap for trap in _TRAPS if rng.random() < 0.2]
    rng.shuffle(steps)
    if "tool_failure" in planted:
        steps.append(_Session.tool_failure)
    for step in [_Session.turn, *steps]:
        step(session, agent, session.root_id)
    closed = rng.random() < 0.7
    if not closed and rng.random() < 0.4:
        session.llm(agent, session.root_id, running=True)
    if not closed and rng.random() < 0.3:  # a top-level span that ends but is not the agent's
        session.add(None, 1, 3, span_type="user_message", name="user says thanks")
    ended = session.clock + timedelta(milliseconds=rng.uniform(1, 50))
    root = Span(**session.common, span_id=session.root_id, span_type="agent", name=agent.name,
                agent_name=agent.name, started_at=session.opened, ended_at=ended if closed else None,
                status="error" if closed and rng.random() < 0.1 else "success")
    if closed or rng.random() < 0.5:  # else the root is still running and has not been sent
        session.spans.append(root)
    if closed:  # late children of a session that is already closed
        children = [span.span_id for span in session.spans if span is not root]
        session.late.update(rng.sample(children, min(len(children), rng.randint(0, 2))))
    return session, _expect(session, closed, tag, fallback_nano_usd)


def _encode(rng: random.Random, chunk: list[Span]) -> bytes:
    return encode_span(chunk[0]) if len(chunk) == 1 and rng.random() < 0.6 else encode_spans(chunk)


def _deliveries(rng: random.Random, session: _Session) -> tuple[list[list[Span]], list[list[Span]]]:
    """(messages in the main phase, late messages), in the order they go out, each a list of spans."""
    root = [span for span in session.spans if span.span_id == session.root_id]
    main = [span for span in session.spans if span.span_id not in session.late and span.span_id != session.root_id]
    rng.shuffle(main)
    if root:  # the root agent span first, last or anywhere
        where = rng.choice((0, len(main), rng.randint(0, len(main))))
        main.insert(where, root[0])
    chunks: list[list[Span]] = []
    while main:
        size = rng.choice((1, 1, 1, 2, 3, 5, 8))
        chunks.append(main[:size])
        main = main[size:]
    late = [span for span in session.spans if span.span_id in session.late]
    rng.shuffle(late)
    late_chunks = [late[:1], late[1:]] if rng.random() < 0.5 else [late]
    late_chunks = [chunk for chunk in late_chunks if chunk]
    resent = session.resent | {span.span_id for span in session.spans if rng.random() < 0.12}
    for span in (span for span in session.spans if span.span_id in resent):
        home = next((i for i, chunk in enumerate(chunks) if span in chunk), None)
        if home is None or rng.random() < 0.3:
            late_chunks.append([span])
        elif rng.random() < 0.5:  # alone, some time later
            chunks.insert(rng.randint(home + 1, len(chunks)), [span])
        else:  # inside a later batch, or (rarely) twice in its own batch
            target = rng.randint(home, len(chunks) - 1) if rng.random() < 0.15 else rng.randint(home + 1, len(chunks))
            if target == len(chunks):
                chunks.append([span])
            else:
                chunks[target].insert(rng.randint(0, len(chunks[target])), span)
    return chunks, late_chunks


def _interleave(rng: random.Random, queues: list[list[bytes]]) -> list[int]:
    """A uniformly random merge of the queues, keeping each queue's order: the queue index per slot."""
    slots = [index for index, queue in enumerate(queues) for _ in queue]
    rng.shuffle(slots)
    return slots


@dataclass
class GroundTruth:
    """Sessions with their expected outcome and the messages that deliver them."""

    expected: dict[tuple[str, str], ExpectedSession] = field(default_factory=dict)
    spans_by_project: dict[str, list[Span]] = field(default_factory=dict)
    plan: list[tuple[bytes, bytes]] = field(default_factory=list)
    # (project_id, session_id) of sessions some span of which is delivered more than once.
    resent: set[tuple[str, str]] = field(default_factory=set)
    # Session ids used by both projects, with different spans.
    shared: set[str] = field(default_factory=set)

    def messages(self) -> list[tuple[bytes, bytes]]:
        """(key, value) raw messages for the `spans` topic, in the order to publish them: key the
        session id, value one span (a JSON object) or a batch (a JSON array) of one session."""
        return list(self.plan)


def build(seed: int, sessions: int, project_ids: tuple[str, str], start: datetime | None = None,
          unknown_model_usd: str = "0.0025", shared_every: int = 12) -> GroundTruth:
    """`sessions` sessions alternating between the two projects (every `shared_every`-th session id
    exists in both), opened over 50 minutes from `start` (default: 58 minutes ago, so that the API's
    default 24-hour window lists them all). The planted tag cycles through PLANTED_TAGS.
    `unknown_model_usd` must match SPANSTREAM_UNKNOWN_MODEL_USD_PER_CALL of the worker."""
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=58)
    fallback = int((Decimal(unknown_model_usd) * NANO).to_integral_value(ROUND_HALF_EVEN))
    truth = GroundTruth(spans_by_project={project: [] for project in project_ids})
    rng = random.Random(f"{seed}:delivery")
    keys: list[bytes] = []
    main: list[list[bytes]] = []
    late: list[list[bytes]] = []
    for index in range(sessions):
        session_id = f"gt-{seed}-{index:04d}"
        owners = project_ids if index % shared_every == 0 else (project_ids[index % 2],)
        if len(owners) == 2:
            truth.shared.add(session_id)
        for twin, project in enumerate(owners):
            session_rng = random.Random(f"{seed}:{index}:{twin}")
            opened = start + timedelta(seconds=index * 3000 / sessions + session_rng.uniform(0, 5))
            tag = PLANTED_TAGS[(index + 3 * twin) % len(PLANTED_TAGS)]
            built, expected = _build_session(session_rng, project, session_id, opened, tag, fallback)
            truth.expected[(project, session_id)] = expected
            truth.spans_by_project[project].extend(built.spans)
            chunks, late_chunks = _deliveries(rng, built)
            if sum(map(len, chunks + late_chunks)) > len(built.spans):
                truth.resent.add((project, session_id))
            keys.append(session_id.encode())
            main.append([_encode(rng, chunk) for chunk in chunks])
            late.append([_encode(rng, chunk) for chunk in late_chunks])
    for queues in (main, late):  # every late message goes after every main one
        positions = [0] * len(queues)
        for index in _interleave(rng, queues):
            truth.plan.append((keys[index], queues[index][positions[index]]))
            positions[index] += 1
    return truth
