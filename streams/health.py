"""Health tags: one verdict per session from its folded state, highest priority first.

The rules are written out in docs/health-tags.md; this module is their only implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.sessions import SessionState, ToolCall


@dataclass(frozen=True)
class Budget:
    """A ceiling per session, in tokens (input + output) and/or nano-USD; None means no ceiling."""

    tokens: int | None = None
    nano_usd: int | None = None

    def exceeded_by(self, tokens: int, nano_usd: int) -> bool:
        return (self.tokens is not None and tokens > self.tokens) or (
            self.nano_usd is not None and nano_usd > self.nano_usd
        )


@dataclass(frozen=True)
class HealthRules:
    # The same tool with the same arguments this many times in a row is a loop.
    loop_threshold: int = 3
    # Per project: the whole session's usage.
    project_budgets: dict[str, Budget] = field(default_factory=dict)
    # Per (project, agent): that agent's usage within the session.
    agent_budgets: dict[tuple[str, str], Budget] = field(default_factory=dict)
    # An open session with no span for this long (event time) is incomplete.
    incomplete_after_us: int = 30 * 60 * 1_000_000


def rules_from_budgets(loop_threshold: int, budgets: dict[str, dict[str, float]]) -> HealthRules:
    """Rules from configured budgets: keys are a project id, or `project_id/agent_name`; values
    have `tokens` and/or `usd`."""
    project_budgets: dict[str, Budget] = {}
    agent_budgets: dict[tuple[str, str], Budget] = {}
    for key, limits in budgets.items():
        usd = limits.get("usd")
        budget = Budget(
            tokens=int(limits["tokens"]) if limits.get("tokens") is not None else None,
            nano_usd=int(round(usd * 1_000_000_000)) if usd is not None else None,
        )
        project, _, agent = key.partition("/")
        if agent:
            agent_budgets[(project, agent)] = budget
        else:
            project_budgets[project] = budget
    return HealthRules(loop_threshold, project_budgets, agent_budgets)


def has_loop(state: SessionState, threshold: int, history: list[ToolCall] | None = None) -> bool:
    run, previous = 0, None
    for call in history if history is not None else sorted(state.tool_history):
        current = (call.tool, call.args_hash)
        run = run + 1 if current == previous else 1
        if run >= threshold:
            return True
        previous = current
    return False


def failing_tools(state: SessionState, history: list[ToolCall] | None = None) -> tuple[set[str], set[str]]:
    """(tools whose latest call failed, tools that failed at some point but whose latest call succeeded)."""
    latest: dict[str, bool] = {}
    ever_failed: set[str] = set()
    for call in history if history is not None else sorted(state.tool_history):
        latest[call.tool] = call.failed
        if call.failed:
            ever_failed.add(call.tool)
    still = {tool for tool, failed in latest.items() if failed}
    return still, ever_failed - still


def over_budget(state: SessionState, rules: HealthRules) -> bool:
    project = rules.project_budgets.get(state.project_id)
    if project is not None and project.exceeded_by(state.total_tokens, state.cost_nano_usd):
        return True
    for agent, (tokens, nano_usd) in state.agent_usage.items():
        budget = rules.agent_budgets.get((state.project_id, agent))
        if budget is not None and budget.exceeded_by(tokens, nano_usd):
            return True
    return False


def health_tag(state: SessionState, rules: HealthRules, now_us: int | None = None) -> str:
    """The session's tag. `now_us` is the event time the session is judged at (the newest span
    time seen on its partition); without it a session is never judged incomplete."""
    history = sorted(state.tool_history)  # in start order, once for both ordered rules
    if has_loop(state, rules.loop_threshold, history):
        return "loop_detected"
    if over_budget(state, rules):
        return "budget_exceeded"
    if state.prevented:
        return "circuit_breaker_open"
    if state.schema_drift:
        return "schema_drift"
    if state.timeouts:
        return "timeout"
    still_failing, recovered = failing_tools(state, history)
    if still_failing:
        return "tool_failure"
    idle = now_us is not None and state.last_us is not None and now_us - state.last_us >= rules.incomplete_after_us
    if not state.root_ended and idle:
        return "incomplete"
    if recovered:
        return "success_with_fallback"
    return "success"
