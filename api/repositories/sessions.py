"""Session reads: the `sessions` view the worker materialized, never a GROUP BY over raw spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.reader import CappedReader
from api.repositories.packed_rows import SESSION_ROW, unpack
from api.window import TimeWindow, micros, request_time

# `incomplete` is judged when read (at as_of, the request's second, bound rather than read from
# the clock so that one second's requests share an answer): an open session that otherwise looks
# healthy and has had no span for the configured time (docs/health-tags.md).
JUDGED_TAG = """if(status = 'open' AND health_tag IN ('success', 'success_with_fallback')
       AND last_at < fromUnixTimestamp64Micro({as_of:Int64}, 'UTC') - toIntervalSecond({incomplete_after:UInt64}),
       'incomplete', health_tag) AS tag"""
# A listed session: its packed row (one column to read per row on the page, not twenty-one) and
# its tag as judged now.
SESSION_FIELDS = "trace_row, " + JUDGED_TAG


def judged_now(incomplete_after: float) -> dict[str, int]:
    """The parameters SESSION_FIELDS needs: when and after how long `incomplete` is judged."""
    return {"as_of": micros(request_time()), "incomplete_after": int(incomplete_after)}

# sort name -> (column, ClickHouse type of its cursor value, Python type of it). Times travel in
# cursors as integer microseconds, so a page boundary is exact.
SORTS = {
    "last_at": ("last_at", "Int64", int),
    "first_at": ("first_at", "Int64", int),
    "cost": ("cost_nano_usd", "UInt64", int),
    "duration": ("duration_ms", "Float64", float),
    "spans": ("spans", "UInt32", int),
    "errors": ("errors", "UInt32", int),
}
_TIME_SORTS = ("last_at", "first_at")


def session_out(row: dict[str, Any]) -> dict[str, Any]:
    """A row of SESSION_FIELDS as the API shows it."""
    return {**unpack(row["trace_row"], SESSION_ROW), "health_tag": row["tag"]}


@dataclass(frozen=True)
class SessionFilter:
    agent: str | None = None
    health_tag: str | None = None
    status: str | None = None
    server: str | None = None
    model: str | None = None
    min_cost_nano_usd: int | None = None
    max_cost_nano_usd: int | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        clauses, parameters = [], {}
        for name, clause in (
            ("agent", "has(agents, {agent:String})"),
            ("health_tag", "tag = {health_tag:String}"),
            ("status", "status = {status:String}"),
            ("server", "has(servers, {server:String})"),
            ("model", "has(models, {model:String})"),
            ("min_cost_nano_usd", "cost_nano_usd >= {min_cost_nano_usd:UInt64}"),
            ("max_cost_nano_usd", "cost_nano_usd <= {max_cost_nano_usd:UInt64}"),
        ):
            value = getattr(self, name)
            if value is not None:
                clauses.append(clause)
                parameters[name] = value
        return "".join(f" AND {clause}" for clause in clauses), parameters


def sort_key(row: dict[str, Any], sort: str) -> list:
    """The cursor values of a listed row: its sort value, then its session id."""
    column = SORTS[sort][0]
    value = row[column]
    return [micros(value) if sort in _TIME_SORTS else value, row["session_id"]]


async def list_sessions(
    reader: CappedReader, project_id: str, window: TimeWindow, incomplete_after: float, *,
    filters: SessionFilter = SessionFilter(), sort: str = "last_at", descending: bool = True,
    after: list | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    """Sessions active in the window (a span between its start and end), ordered by `sort` and
    then session id, starting after the keyset `after` ([sort value, session id]); up to `limit`."""
    column, cursor_type, _ = SORTS[sort]
    where, parameters = filters.sql()
    if after is not None:
        bound = f"fromUnixTimestamp64Micro({{after_value:{cursor_type}}}, 'UTC')" if sort in _TIME_SORTS \
            else f"{{after_value:{cursor_type}}}"
        where += f" AND ({column}, session_id) {'<' if descending else '>'} ({bound}, {{after_id:String}})"
        parameters.update(after_value=after[0], after_id=after[1])
    direction = "DESC" if descending else "ASC"
    rows = await reader.rows(
        f"""SELECT {SESSION_FIELDS} FROM sessions FINAL
            WHERE project_id = {{project_id:String}}
              AND last_at >= fromUnixTimestamp64Micro({{window_start:Int64}}, 'UTC')
              AND first_at <= fromUnixTimestamp64Micro({{window_end:Int64}}, 'UTC') {where}
            ORDER BY {column} {direction}, session_id {direction}
            LIMIT {{limit:UInt32}}""",
        {"project_id": project_id, **window.parameters(),
         "limit": limit, **judged_now(incomplete_after), **parameters},
    )
    return [session_out(row) for row in rows]


async def summarize_sessions(reader: CappedReader, project_id: str, hours: float) -> dict[str, Any]:
    rows = await reader.rows(
        """SELECT count() AS sessions, sum(spans) AS spans, sum(cost_nano_usd) AS cost_nano_usd,
                  countIf(status = 'open') AS open_sessions
           FROM sessions FINAL
           WHERE project_id = {project_id:String} AND last_at >= now64(6) - toIntervalSecond({seconds:UInt64})""",
        {"project_id": project_id, "seconds": int(hours * 3600)},
    )
    return rows[0]
