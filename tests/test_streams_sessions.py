"""Session folding and health tags: pure, on plain values."""

from __future__ import annotations

import random
from types import SimpleNamespace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
import orjson

from schemas.span import Span
from streams.health import Budget, HealthRules, health_tag
from streams.sessions import SessionState, dump_state, fold, fold_all, load_state, session_record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = HealthRules()


def span(span_id: str, at: int = 0, **fields) -> Span:
    defaults = {"started_at": T0 + timedelta(seconds=at), "ended_at": T0 + timedelta(seconds=at, milliseconds=500)}
    return Span(project_id="p", session_id="s", span_id=span_id, **{**defaults, **fields})


def folded(spans, costs=None) -> SessionState:
    state = SessionState("p", "s")
    for item in spans:
        fold(state, item, (costs or {}).get(item.span_id, 0))
    return state


def tool(span_id, at, name="search", args='{"q":1}', status="success", server="docs"):
    return span(span_id, at, span_type="tool_call", server_name=server, tool_name=name, input_args=args, status=status)


def test_totals_counts_and_sets():
    state = folded([
        span("root", 0, span_type="agent", agent_name="a1", ended_at=None),
        span("llm", 1, span_type="llm", model_id="gpt-4o", agent_name="a1", input_tokens=100, output_tokens=20,
             cache_read_tokens=60, thinking_tokens=5),
        tool("t1", 2, status="error"),
        tool("t2", 3),
    ], costs={"llm": 1234})
    record = session_record(state, health_tag(state, RULES))
    assert (record["spans"], record["llm_calls"], record["tool_calls"], record["failed_calls"], record["errors"]) == (4, 1, 2, 1, 1)
    assert (record["input_tokens"], record["output_tokens"], record["cache_read_tokens"], record["thinking_tokens"]) == (100, 20, 60, 5)
    assert record["agents"] == ["a1"] and record["servers"] == ["docs"] and record["models"] == ["gpt-4o"]
    assert record["cost_nano_usd"] == 1234
    assert record["duration_ms"] == 3500  # first start to last end
    assert record["health_tag"] == "success_with_fallback"
    assert record["status"] == "open"  # the root agent span never ended
    assert sum(cell["calls"] for cell in record["costs"]) == 4


@st.composite
def sessions(draw):
    count = draw(st.integers(1, 25))
    spans = []
    for i in range(count):
        kind = draw(st.sampled_from(["llm", "tool_call", "agent"]))
        spans.append(span(
            f"s{i}", draw(st.integers(0, 600)), span_type=kind,
            status=draw(st.sampled_from(["success", "success", "error", "timeout", "prevented"])),
            server_name=draw(st.sampled_from([None, "docs", "jira"])), tool_name=draw(st.sampled_from(["a", "b"])),
            input_args=draw(st.sampled_from(['{"x":1}', '{"x":2}'])), model_id=draw(st.sampled_from([None, "m1", "m2"])),
            agent_name=draw(st.sampled_from([None, "a1", "a2"])), input_tokens=draw(st.integers(0, 10**6)),
            output_tokens=draw(st.integers(0, 10**5)),
        ))
    return spans, {s.span_id: draw(st.integers(0, 10**9)) for s in spans}


@settings(max_examples=200, deadline=None)
@given(sessions(), st.randoms(use_true_random=False), st.integers(0, 5))
def test_any_order_and_any_duplicates_give_the_same_session(case, rnd, duplicates):
    spans, costs = case
    expected = folded(spans, costs)
    delivered = spans + [rnd.choice(spans) for _ in range(duplicates)]
    rnd.shuffle(delivered)
    got = folded(delivered, costs)
    rules = HealthRules(project_budgets={"p": Budget(tokens=5 * 10**6)})
    assert session_record(got, health_tag(got, rules)) == session_record(expected, health_tag(expected, rules))


@st.composite
def deliveries(draw):
    """A session's spans delivered as messages: shuffled, with duplicates, cut anywhere."""
    spans, costs = draw(sessions())
    extra = draw(st.lists(st.sampled_from(spans), max_size=5))
    odd = [span("drift", draw(st.integers(0, 600)), attributes={"schema_drift": draw(st.booleans())}),
           span("root", 0, span_type="agent", ended_at=draw(st.sampled_from([None, T0 + timedelta(hours=2)]))),
           span("sub", 0, span_type="agent", parent_span_id="root", cache_read_tokens=draw(st.integers(0, 9)),
                cache_creation_tokens=draw(st.integers(0, 9)), thinking_tokens=draw(st.integers(0, 9)))]
    delivered = draw(st.permutations(spans + extra + draw(st.lists(st.sampled_from(odd), max_size=3, unique_by=id))))
    cuts = sorted(draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    return [delivered[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivered)])], costs


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_the_batched_fold_gives_the_state_the_span_by_span_fold_gives(case):
    messages, costs = case

    def price(item):
        return SimpleNamespace(nano_usd=costs.get(item.span_id, 7), priced=item.model_id != "m2")

    one_by_one, batched = SessionState("p", "s"), SessionState("p", "s")
    for spans in messages:
        changed = False
        for item in spans:
            charge = price(item)
            changed |= fold(one_by_one, item, charge.nano_usd, charge.priced)
        assert fold_all(batched, spans, price) == changed
        # Byte for byte, as the changelog stores it: dict orders included.
        assert orjson.dumps(dump_state(batched)) == orjson.dumps(dump_state(one_by_one))
    assert batched == one_by_one


@settings(max_examples=100, deadline=None)
@given(sessions())
def test_state_survives_the_changelog_round_trip(case):
    spans, costs = case
    state = folded(spans, costs)
    restored = load_state(dump_state(state))
    assert session_record(restored, health_tag(restored, RULES)) == session_record(state, health_tag(state, RULES))
    assert restored.span_ids == state.span_ids


def test_a_duplicate_changes_nothing_not_even_the_version():
    state = folded([span("a"), span("b")])
    assert not fold(state, span("a"))
    assert state.version == 2 and state.spans == 2


def test_loop_is_the_same_call_n_times_in_a_row_by_start_time():
    calls = [tool("t1", 1), tool("t2", 2), tool("t3", 3)]
    shuffled = random.Random(7).sample(calls, 3)
    assert health_tag(folded(shuffled), RULES) == "loop_detected"
    interrupted = [tool("t1", 1), tool("t2", 2), tool("x", 3, args='{"q":2}'), tool("t3", 4)]
    assert health_tag(folded(interrupted), RULES) == "success"


def test_priorities():
    assert health_tag(folded([tool("a", 1, status="prevented"), tool("b", 2, status="timeout")]), RULES) == "circuit_breaker_open"
    assert health_tag(folded([span("a", 1, attributes={"schema_drift": True}), tool("b", 2, status="timeout")]), RULES) == "schema_drift"
    assert health_tag(folded([tool("a", 1, status="timeout", args="1")]), RULES) == "timeout"
    assert health_tag(folded([tool("a", 1, args="1"), tool("b", 2, status="error", args="2")]), RULES) == "tool_failure"
    # failed, then the same tool succeeded later: recovered
    assert health_tag(folded([tool("a", 1, status="error", args="1"), tool("b", 2, args="2")]), RULES) == "success_with_fallback"


def test_budgets_per_project_and_per_agent():
    spans = [span("l", 1, span_type="llm", agent_name="planner", input_tokens=900, output_tokens=200)]
    assert health_tag(folded(spans), HealthRules(project_budgets={"p": Budget(tokens=1000)})) == "budget_exceeded"
    assert health_tag(folded(spans), HealthRules(agent_budgets={("p", "planner"): Budget(tokens=1000)})) == "budget_exceeded"
    assert health_tag(folded(spans, {"l": 2_000}), HealthRules(project_budgets={"p": Budget(nano_usd=1_000)})) == "budget_exceeded"
    assert health_tag(folded(spans), HealthRules(project_budgets={"p": Budget(tokens=2000)})) == "success"


def test_incomplete_is_judged_in_event_time_and_only_while_open():
    rules = HealthRules(incomplete_after_us=60 * 1_000_000)
    open_session = folded([span("a", 0, span_type="llm")])
    last = open_session.last_us
    assert health_tag(open_session, rules, now_us=last + 59 * 1_000_000) == "success"
    assert health_tag(open_session, rules, now_us=last + 60 * 1_000_000) == "incomplete"
    closed = folded([span("root", 0, span_type="agent"), span("a", 0, span_type="llm")])
    assert session_record(closed, "success")["status"] == "closed"
    assert health_tag(closed, rules, now_us=last + 10**12) == "success"


def test_a_redelivered_message_gives_back_the_same_record_and_health_change():
    from decimal import Decimal

    from streams.pricing import PriceBook
    from streams.session_step import apply_spans

    book = PriceBook([], Decimal("0"))
    state = SessionState("p", "s")
    spans = [tool("a", 1, status="error", args="1"), tool("b", 2, status="error", args="2")]
    first = apply_spans(state, spans, book, RULES)
    again = apply_spans(state, spans, book, RULES)
    assert first.changed and not again.changed
    assert again.record == first.record and again.health_change == first.health_change
    assert first.health_change["health_tag"] == "tool_failure" and first.health_change["version"] == 2


def test_budgets_from_configuration():
    from streams.health import rules_from_budgets

    rules = rules_from_budgets(3, {"p": {"usd": 0.000001}, "p/planner": {"tokens": 500}})
    assert rules.project_budgets["p"].nano_usd == 1000
    assert rules.agent_budgets[("p", "planner")].tokens == 500
    spans = [span("l", 1, span_type="llm", agent_name="planner", input_tokens=400, output_tokens=200)]
    assert health_tag(folded(spans), rules) == "budget_exceeded"
    assert health_tag(folded(spans), rules_from_budgets(3, {"p/other": {"tokens": 1}})) == "success"
