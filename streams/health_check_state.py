"""Folds one MCP server's health checks into its state: schema drift and status changes.

Pure: `observe(state, check) -> (state, events)` on plain dicts (the `health.checks` record,
schemas/health_check.py), so the same checks give the same events whatever the agent around it
(streams/health_checks.py) went through. Redelivery is harmless:

- the last check again (a crash after the state was saved, before its rows were): the same
  events, computed again from the state before it, with the same ids;
- an older check (a redelivered batch whose events are already written, or a late check from a
  prober that lost its shard): history only, no event, the state unchanged.

Drift compares with the last *known* tools hash: a server that goes down (no hash) and comes back
with other tools has drifted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

State = dict[str, Any]
Event = dict[str, Any]


def _at(check: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(check["checked_at"]), check["check_id"]


def _status_change(previous: str | None, status: str) -> str | None:
    if previous == status:
        return None
    if status == "down":
        return "down"  # also a server whose very first check is down
    if previous is None:
        return None  # first check, up or degraded: nothing changed
    return "recovered" if status == "up" else "degraded"


def _summary(check: dict[str, Any], before: State | None) -> State:
    """What the next check is compared with, and the latest-state row's fields."""
    same_status = before is not None and before["status"] == check["status"]
    known = check["tools_hash"] is not None
    return {
        "check_id": check["check_id"],
        "checked_at": check["checked_at"],
        "status": check["status"],
        "status_since": before["status_since"] if same_status else check["checked_at"],
        "last_up_at": check["checked_at"] if check["status"] == "up" else (before or {}).get("last_up_at"),
        "known_hash": check["tools_hash"] if known else (before or {}).get("known_hash"),
        "known_tools": check.get("tools", []) if known else (before or {}).get("known_tools", []),
    }


def _events(before: State | None, check: dict[str, Any]) -> list[Event]:
    common = {"project_id": check["project_id"], "server_name": check["server_name"], "at": check["checked_at"],
              "check_id": check["check_id"], "previous_check_id": (before or {}).get("check_id")}
    events: list[Event] = []
    old_hash, new_hash = (before or {}).get("known_hash"), check["tools_hash"]
    if old_hash is not None and new_hash is not None and old_hash != new_hash:
        old = {tool["name"]: tool["hash"] for tool in before.get("known_tools", [])}
        new = {tool["name"]: tool["hash"] for tool in check.get("tools", [])}
        events.append({
            **common, "kind": "schema_drift", "old_hash": old_hash, "new_hash": new_hash,
            "tools_added": sorted(new.keys() - old.keys()), "tools_removed": sorted(old.keys() - new.keys()),
            "tools_changed": sorted(name for name in new.keys() & old.keys() if new[name] != old[name]),
        })
    change = _status_change((before or {}).get("status"), check["status"])
    if change is not None:
        events.append({**common, "kind": change, "status": check["status"],
                       "previous_status": (before or {}).get("status"), "error": check.get("error")})
    return events


def observe(state: State | None, check: dict[str, Any]) -> tuple[State | None, list[Event]]:
    """The server's state after `check`, and the events `check` causes (see the module doc)."""
    if state is None:
        return {"last": _summary(check, None), "before_last": None}, _events(None, check)
    last = state["last"]
    if check["check_id"] == last["check_id"]:
        return state, _events(state["before_last"], check)
    if _at(check) < _at(last):
        return state, []
    return {"last": _summary(check, last), "before_last": last}, _events(last, check)
