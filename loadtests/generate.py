"""Seeded, realistic agent sessions as Span v1: the input every load test sends."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.span import Span

# Fixed, so that a seed always gives the same spans. The store drops spans older than 90 days
# (its TTL): a run whose spans must be read back from ClickHouse passes a recent `start`.
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
# Sessions open about five a second, as many concurrent users of one deployment would.
SESSION_GAP_S = 0.2

TOOL_ERROR_RATE = 0.04
LLM_ERROR_RATE = 0.01
AGENT_ERROR_RATE = 0.02

TOOL_ERRORS = (
    ("error", "upstream returned 502 Bad Gateway"),
    ("error", "rate limited by upstream API (429), retry after 2s"),
    ("error", "permission denied: token lacks scope 'repo'"),
    ("error", "invalid arguments: 'path' must be relative to the workspace"),
    ("timeout", "tool call exceeded 30s deadline"),
)
LLM_ERRORS = (
    ("error", "overloaded_error: Overloaded"),
    ("error", "rate_limit_error: output tokens per minute exceeded"),
    ("timeout", "request timed out after 60s"),
)

WORDS = (
    "refund policy", "invoice 2024-118", "oauth callback", "retry backoff", "kafka consumer lag",
    "pricing tiers", "gdpr export", "flaky test", "memory leak", "onboarding checklist",
    "latency p99", "schema migration", "webhook signature", "sso setup", "quarterly revenue",
)


@dataclass(frozen=True)
class Model:
    model_id: str
    # How prompt caching shows up in the counts: Anthropic reads and writes a cache
    # explicitly; OpenAI reads cached prefixes (1024+ tokens, 128-token steps) and never bills a write.
    provider: str
    ms_per_output_token: float


MODELS = {
    m.model_id: m
    for m in (
        Model("claude-sonnet-4-5", "anthropic", 14.0),
        Model("claude-haiku-4-5", "anthropic", 6.0),
        Model("claude-opus-4-1", "anthropic", 25.0),
        Model("gpt-4o", "openai", 12.0),
        Model("gpt-4o-mini", "openai", 7.0),
    )
}


@dataclass(frozen=True)
class Tool:
    """An MCP tool: its server, how its arguments and results look, and how long it takes."""

    server_name: str
    tool_name: str
    arguments: Callable[[random.Random], dict[str, Any]]
    result: Callable[[random.Random], dict[str, Any]]
    median_ms: float


def _hits(rng: random.Random) -> dict[str, Any]:
    return {"hits": [{"id": f"doc-{rng.randrange(10_000)}", "score": round(rng.random(), 3),
                      "title": rng.choice(WORDS).title()} for _ in range(rng.randint(0, 4))]}


def _rows(rng: random.Random) -> dict[str, Any]:
    return {"columns": ["day", "total"],
            "rows": [[f"2025-01-{d:02d}", rng.randrange(100_000)] for d in range(1, rng.randint(2, 8))]}


def _file(rng: random.Random) -> dict[str, Any]:
    return {"path": f"src/{rng.choice(('api', 'core', 'jobs'))}/module_{rng.randrange(50)}.py",
            "lines": rng.randint(20, 900), "sha": f"{rng.getrandbits(40):010x}"}


TOOLS = {
    t.tool_name: t
    for t in (
        Tool("docs-mcp", "search_docs", lambda r: {"query": r.choice(WORDS), "limit": 5}, _hits, 180),
        Tool("docs-mcp", "get_article", lambda r: {"id": f"doc-{r.randrange(10_000)}"},
             lambda r: {"title": r.choice(WORDS).title(), "words": r.randint(200, 3000)}, 90),
        Tool("crm-mcp", "lookup_customer", lambda r: {"email": f"user{r.randrange(10**6)}@example.com"},
             lambda r: {"customer_id": f"cus_{r.getrandbits(32):08x}",
                        "plan": r.choice(("free", "team", "enterprise"))}, 120),
        Tool("crm-mcp", "create_ticket", lambda r: {"subject": r.choice(WORDS), "priority": r.choice(("low", "high"))},
             lambda r: {"ticket_id": r.randrange(10**6), "status": "open"}, 250),
        Tool("github-mcp", "search_code", lambda r: {"q": r.choice(WORDS), "repo": "acme/platform"}, _hits, 600),
        Tool("github-mcp", "get_file_contents", lambda r: {"repo": "acme/platform", "path": _file(r)["path"]},
             _file, 300),
        Tool("filesystem-mcp", "read_file", lambda r: {"path": _file(r)["path"]}, _file, 8),
        Tool("filesystem-mcp", "write_file", lambda r: {"path": _file(r)["path"], "bytes": r.randint(100, 9000)},
             lambda r: {"ok": True}, 12),
        Tool("web-search-mcp", "search", lambda r: {"query": r.choice(WORDS)}, _hits, 900),
        Tool("web-search-mcp", "fetch_url", lambda r: {"url": f"https://example.com/{r.randrange(10**5)}"},
             lambda r: {"status": 200, "chars": r.randint(500, 40_000)}, 1200),
        Tool("postgres-mcp", "list_tables", lambda r: {"schema": "public"},
             lambda r: {"tables": ["orders", "customers", "events"][: r.randint(1, 3)]}, 40),
        Tool("postgres-mcp", "query",
             lambda r: {"sql": f"SELECT day, sum(total) FROM orders WHERE region = {r.randrange(9)} GROUP BY day"},
             _rows, 350),
    )
}


@dataclass(frozen=True)
class AgentProfile:
    """A kind of agent: the models it calls, the tools it may use, the size of its fixed prompt."""

    agent_name: str
    models: tuple[str, ...]
    tools: tuple[str, ...]
    system_tokens: int  # system prompt plus tool definitions, resent on every call
    thinking: bool  # extended thinking on (Anthropic models only)


PROFILES = (
    AgentProfile("support-agent", ("claude-sonnet-4-5", "claude-haiku-4-5"),
                 ("search_docs", "get_article", "lookup_customer", "create_ticket"), 3200, False),
    AgentProfile("coding-agent", ("claude-sonnet-4-5", "claude-opus-4-1"),
                 ("search_code", "get_file_contents", "read_file", "write_file"), 9000, True),
    AgentProfile("research-agent", ("gpt-4o", "gpt-4o-mini"), ("search", "fetch_url"), 1800, False),
    AgentProfile("data-analyst", ("gpt-4o", "claude-sonnet-4-5"), ("list_tables", "query"), 2600, False),
)


@dataclass
class _Context:
    """The prompt an agent resends each turn: it grows by every output and tool result."""

    tokens: int
    cached: int = 0  # prefix the provider has cached from the previous call

    def llm_counts(self, model: Model, rng: random.Random) -> dict[str, int]:
        # Span v1 semantics (schemas/README.md): input_tokens counts every input token, the ones
        # read from or written to the cache included.
        if model.provider == "anthropic":
            # The cache breakpoint sits on the newest message: all but a few formatting tokens are written.
            uncached = rng.randint(1, 12)
            counts = {"cache_read_tokens": self.cached, "cache_creation_tokens": self.tokens - self.cached,
                      "input_tokens": self.tokens + uncached}
        else:
            read = min(self.tokens, self.cached) // 128 * 128 if self.tokens >= 1024 else 0
            counts = {"cache_read_tokens": read, "cache_creation_tokens": 0, "input_tokens": self.tokens}
        self.cached = self.tokens
        return counts


def _tool_latency_ms(rng: random.Random, tool: Tool) -> float:
    return tool.median_ms * rng.lognormvariate(0, 0.6)


def generate_session(
    seed: int, index: int, spans_per_session: int, project_id: str, start: datetime = DEFAULT_START
) -> list[Span]:
    """Session `index` of the sessions of `seed`: exactly `spans_per_session` spans, the agent span
    first, then LLM turns each followed by the MCP tool calls it asked for (parallel calls overlap).
    Each session has its own random stream, so it can be regenerated alone."""
    if spans_per_session < 1:
        raise ValueError("a session has at least its agent span")
    rng = random.Random(f"{seed}:{index}")
    profile = rng.choice(PROFILES)
    session_id = f"sess-{seed}-{index:07d}"
    trace_id = f"{rng.getrandbits(128):032x}"
    root_id = f"{rng.getrandbits(32):08x}{0:08x}"
    opened = start + timedelta(seconds=index * SESSION_GAP_S + rng.uniform(0, SESSION_GAP_S))
    common = {"project_id": project_id, "session_id": session_id, "trace_id": trace_id,
              "agent_name": profile.agent_name}
    context = _Context(tokens=profile.system_tokens + rng.randint(30, 600))
    children: list[Span] = []
    clock = opened + timedelta(milliseconds=rng.uniform(2, 20))
    remaining = spans_per_session - 1

    def span_id() -> str:
        return f"{root_id[:8]}{len(children) + 1:08x}"

    while remaining > 0:
        model = MODELS[profile.models[0] if rng.random() < 0.8 else profile.models[1]]
        remaining -= 1
        final = remaining == 0
        tools = 0 if final else min(rng.choice((1, 1, 1, 1, 2, 2, 3)), remaining)
        if rng.random() < LLM_ERROR_RATE:
            status, error = rng.choice(LLM_ERRORS)
            counts, output, thinking, finish = {}, 0, 0, None
            latency = rng.uniform(200, 60_000 if status == "timeout" else 2_000)
            tools = 0  # the agent retries the call instead of running tools
        else:
            status, error = "success", None
            counts = context.llm_counts(model, rng)
            output = rng.randint(400, 1500) if final else rng.randint(40, 320)
            thinking = rng.randint(200, 4000) if profile.thinking and model.provider == "anthropic" else 0
            finish = ("end_turn" if final or not tools else "tool_use") if model.provider == "anthropic" \
                else ("stop" if final or not tools else "tool_calls")
            latency = rng.uniform(250, 900) + (output + thinking) * model.ms_per_output_token
            context.tokens += output
        ended = clock + timedelta(milliseconds=latency)
        children.append(Span(
            **common, span_id=span_id(), parent_span_id=root_id, span_type="llm", name=f"chat {model.model_id}",
            model_id=model.model_id, started_at=clock, ended_at=ended, status=status, error=error,
            # output_tokens includes the thinking tokens (Span v1 semantics)
            output_tokens=output + thinking, thinking_tokens=thinking, finish_reason=finish, **counts,
        ))
        clock = ended
        turn_end = clock
        for _ in range(tools):
            tool = TOOLS[rng.choice(profile.tools)]
            tool_started = clock + timedelta(milliseconds=rng.uniform(0.5, 5))
            if rng.random() < TOOL_ERROR_RATE:
                status, error = rng.choice(TOOL_ERRORS)
                result = None
                latency = 30_000.0 if status == "timeout" else _tool_latency_ms(rng, tool)
            else:
                status, error, result = "success", None, tool.result(rng)
                latency = _tool_latency_ms(rng, tool)
            tool_ended = tool_started + timedelta(milliseconds=latency)
            children.append(Span(
                **common, span_id=span_id(), parent_span_id=root_id, span_type="tool_call", name=tool.tool_name,
                server_name=tool.server_name, tool_name=tool.tool_name, started_at=tool_started, ended_at=tool_ended,
                status=status, error=error, input_args=tool.arguments(rng), output_result=result,
            ))
            context.tokens += 40 + (len(children[-1].output_result or error or "") // 4)
            turn_end = max(turn_end, tool_ended)
            remaining -= 1
        clock = turn_end + timedelta(milliseconds=rng.uniform(1, 15))

    failed = rng.random() < AGENT_ERROR_RATE
    root = Span(
        **common, span_id=root_id, span_type="agent", name=profile.agent_name, started_at=opened,
        ended_at=clock, status="error" if failed else "success",
        error="agent stopped: too many consecutive tool errors" if failed else None,
    )
    return [root, *children]


def iter_sessions(
    seed: int, sessions: int, spans_per_session: int, project_id: str, start: datetime = DEFAULT_START
) -> Iterator[list[Span]]:
    """Sessions 0..sessions-1 of `seed`, one at a time, for runs too large to hold in memory."""
    for index in range(sessions):
        yield generate_session(seed, index, spans_per_session, project_id, start)


def generate_sessions(
    seed: int, sessions: int, spans_per_session: int, project_id: str, start: datetime = DEFAULT_START
) -> list[list[Span]]:
    """`sessions` sessions of `spans_per_session` spans each; the same arguments give the same spans."""
    return list(iter_sessions(seed, sessions, spans_per_session, project_id, start))
