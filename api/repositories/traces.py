"""A session's spans for its trace view: the whole tree's shape, and one page of spans in start order."""

from __future__ import annotations

import asyncio
from typing import Any

from api.reader import CappedReader
from api.repositories.packed_rows import COST_ROW, SESSION_ROW, SPAN_ROW, unpack
from api.repositories.sessions import JUDGED_TAG, judged_now

_SESSION = "project_id = {project_id:String} AND session_id = {session_id:String}"
_KEYSET = "AND (started_at, span_id) > (fromUnixTimestamp64Micro({after_at:Int64}, 'UTC'), {after_id:String})"


async def session_trace(
    reader: CappedReader, project_id: str, session_id: str, incomplete_after: float, after: list | None, limit: int,
    whole_up_to: int,
) -> tuple[dict[str, Any], list[dict[str, Any]], bool] | None:
    """The session with its cost cells, its spans ordered by (started_at, span_id), and whether
    those are all of its spans; None if there is no such session. On the first page (`after`
    None) a session of at most `whole_up_to` spans comes whole; otherwise up to `limit` spans
    after the keyset `after` ([started_at in µs, span id]).

    Three point lookups at once: the store reads on several connections, so the trace waits for
    the slowest of them, not for their sum. Each reads the packed `trace_row` rather than the
    columns (chdb's cost of a lookup grows by ~0.35 ms per column read), and the first page is
    read unordered and sorted here: ClickHouse's sort needs two more columns read."""
    key = {"project_id": project_id, "session_id": session_id}
    if after is None:
        spans_read = reader.rows(f"SELECT trace_row FROM spans FINAL WHERE {_SESSION} LIMIT {{limit:UInt32}}",
                                 {**key, "limit": whole_up_to + 1}, point_lookup=True)
    else:
        spans_read = _page(reader, key, after, limit)
    rows, cells, spans = await asyncio.gather(
        reader.rows(f"SELECT trace_row, {JUDGED_TAG} FROM sessions FINAL WHERE {_SESSION}",
                    {**key, **judged_now(incomplete_after)}, point_lookup=True),
        reader.rows(f"SELECT trace_row FROM session_costs FINAL WHERE {_SESSION}", key, point_lookup=True),
        spans_read,
    )
    if not rows:
        return None
    session = {**unpack(rows[0]["trace_row"], SESSION_ROW), "health_tag": rows[0]["tag"]}
    costs = sorted((unpack(cell["trace_row"], COST_ROW) for cell in cells),
                   key=lambda c: (c["hour"], c["model_id"], c["agent_name"], c["server_name"]))
    whole = after is None and len(spans) <= whole_up_to
    if after is None and not whole:  # too large to read whole: its first page, in ClickHouse's order
        spans = await _page(reader, key, None, limit)
    trace = [unpack(span["trace_row"], SPAN_ROW) for span in spans]
    if whole:
        trace.sort(key=lambda span: (span["started_at"], span["span_id"]))
    return {**session, "costs": costs}, trace, whole


async def _page(reader: CappedReader, key: dict[str, str], after: list | None, limit: int) -> list[dict[str, Any]]:
    parameters: dict[str, Any] = {**key, "limit": limit}
    keyset = ""
    if after is not None:
        keyset = _KEYSET
        parameters.update(after_at=after[0], after_id=after[1])
    return await reader.rows(f"""SELECT trace_row FROM spans FINAL WHERE {_SESSION} {keyset}
                                 ORDER BY started_at, span_id LIMIT {{limit:UInt32}}""", parameters, point_lookup=True)


async def span_parents(reader: CappedReader, project_id: str, session_id: str) -> dict[str, str]:
    """span id -> parent span id ('' for none) of every span of the session."""
    rows = await reader.rows(
        """SELECT span_id, parent_span_id FROM spans FINAL
           WHERE project_id = {project_id:String} AND session_id = {session_id:String}""",
        {"project_id": project_id, "session_id": session_id}, point_lookup=True,
    )
    return {row["span_id"]: row["parent_span_id"] for row in rows}
