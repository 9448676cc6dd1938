"""Alert incidents of the caller's project: list and read (any role); acknowledge, snooze and
resolve (member+), each audited. Rules themselves are at /api/alerts/rules (api/routers/alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import ClientIp, CurrentProject, Pool, WriterCaller
from api.models import errors
from api.repositories import alerts as incidents
from api.repositories.alert_deliveries import deliveries_of
from api.repositories.audit import Actor, record

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
State = Literal["firing", "acknowledged", "snoozed", "resolved"]
MAX_SNOOZE = timedelta(days=30)
_ONE = errors({404: "no such alert in this project"})
_ERRORS = errors({403: "needs the member role", 404: "no such alert in this project",
                  409: "the alert is resolved already"})
_RULE = errors({403: "needs the member role", 404: "no such alert rule in this project (or, deleting, not snoozed)"})


class Delivery(BaseModel):
    id: UUID
    event: Literal["fired", "repeated", "resolved"]
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = Field(description="the receiver's last HTTP status; null: no answer (timeout, refused)")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")


class Alert(BaseModel):
    id: UUID
    rule_id: UUID
    rule_name: str
    kind: str
    state: State
    summary: str
    details: dict[str, Any]
    dedup_key: str
    fired_at: datetime
    notified: bool = Field(description="false: opened within the rule's cooldown, so no webhook was sent")
    notifications: int
    next_notify_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    snoozed_until: datetime | None
    snoozed_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="`auto` when the condition cleared, else who resolved it")
    deliveries: list[Delivery] | None = Field(default=None, description="only on GET /api/alerts/{id}")


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None


class SnoozeIn(BaseModel):
    """Exactly one of `until` (a time with its zone) and `minutes`; at most 30 days ahead."""

    model_config = ConfigDict(extra="forbid")
    until: datetime | None = None
    minutes: int | None = Field(default=None, ge=1, le=30 * 24 * 60)

    @model_validator(mode="after")
    def _one(self) -> SnoozeIn:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give exactly one of `until` (ISO 8601 time) and `minutes`")
        if self.until is not None:
            if self.until.tzinfo is None:
                raise ValueError("`until` needs a time zone, e.g. 2026-12-01T12:00:00Z")
            ahead = self.until - datetime.now(UTC)
            if ahead <= timedelta(0):
                raise ValueError("`until` is in the past: snooze until a later time")
            if ahead > MAX_SNOOZE:
                raise ValueError("a snooze may last at most 30 days")
        return self

    def end(self, now: datetime) -> datetime:
        return self.until if self.until is not None else now + timedelta(minutes=self.minutes)


def _out(row: dict[str, Any], deliveries: list[dict[str, Any]] | None = None) -> Alert:
    return Alert(**{**row, "rule_name": row.get("rule_name", "")}, deliveries=deliveries)


@router.get("", response_model=AlertPage, responses=errors({400: "malformed cursor"}), summary="Alert incidents of the project, newest first")
async def list_alerts(project: CurrentProject, pool: Pool,
                      state: Annotated[list[State] | None, Query(description="repeat to allow several")] = None,
                      rule_id: UUID | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                      cursor: str | None = None) -> AlertPage:
    rows, next_cursor = await incidents.list_alerts(pool, project.id, state, rule_id, limit, cursor)
    return AlertPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


@router.get("/{alert_id}", response_model=Alert, responses=_ONE, summary="One incident and its webhook deliveries")
async def get_alert(alert_id: UUID, project: CurrentProject, pool: Pool) -> Alert:
    row = await incidents.get_alert(pool, project.id, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id} in this project")
    return _out(row, await deliveries_of(pool, alert_id))


async def _change(request: Request, caller, pool, ip, alert_id: UUID, action: str, event: str, apply) -> Alert:
    async def audit(connection, row):
        await record(connection, Actor(caller.actor, ip), action, f"alert:{alert_id}", caller.project.id,
                     caller.user_id, {"rule_id": str(row["rule_id"]), "state": row["state"],
                                      "snoozed_until": row["snoozed_until"].isoformat() if row["snoozed_until"] else None})
    try:
        row = await apply(audit)
    except incidents.NotOpen as error:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{error}: it cannot be changed any more") from error
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id} in this project")
    feed = getattr(request.app.state, "alert_feed", None)
    if feed is not None:
        feed.publish(row, event, caller.actor)
    engine = getattr(request.app.state, "alert_engine", None)
    if engine is not None:
        engine.wake()
    found = await incidents.get_alert(pool, caller.project.id, alert_id)
    return _out(found)


class RuleSnooze(BaseModel):
    rule_id: UUID
    until: datetime
    snoozed_by: str


def _snooze_end(body: SnoozeIn) -> datetime:
    return body.end(datetime.now(UTC))


def _rule_audit(caller, ip, action: str):
    async def audit(connection, row):
        await record(connection, Actor(caller.actor, ip), action, f"alert_rule:{row['rule_id']}", caller.project.id,
                     caller.user_id, {"until": row["until"].isoformat()})
    return audit


@router.post("/rules/{rule_id}/snooze", response_model=RuleSnooze, responses=_RULE,
             summary="Snooze a whole rule (member+): its incidents are still recorded, but send no fired or "
                     "repeated webhook until then")
async def snooze_rule(rule_id: UUID, body: SnoozeIn, caller: WriterCaller, pool: Pool, ip: ClientIp) -> RuleSnooze:
    until = _snooze_end(body)
    row = await incidents.snooze_rule(pool, caller.project.id, rule_id, until, caller.actor,
                                      _rule_audit(caller, ip, "alert_rule.snoozed"))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id} in this project")
    return RuleSnooze(**row)


@router.delete("/rules/{rule_id}/snooze", status_code=status.HTTP_204_NO_CONTENT,
               responses=_RULE,
               summary="End a rule's snooze (member+)")
async def unsnooze_rule(rule_id: UUID, caller: WriterCaller, pool: Pool, ip: ClientIp) -> Response:
    if not await incidents.unsnooze_rule(pool, caller.project.id, rule_id,
                                         _rule_audit(caller, ip, "alert_rule.unsnoozed")):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert rule {rule_id} is not snoozed in this project")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{alert_id}/ack", response_model=Alert, responses=_ERRORS,
             summary="Acknowledge (member+): no more repeats; it still resolves, and says so")
async def acknowledge(alert_id: UUID, request: Request, caller: WriterCaller, pool: Pool, ip: ClientIp) -> Alert:
    return await _change(request, caller, pool, ip, alert_id, "alert.acknowledged", "acknowledged",
                         lambda audit: incidents.acknowledge(pool, caller.project.id, alert_id, caller.actor, audit))


@router.post("/{alert_id}/snooze", response_model=Alert, responses=_ERRORS,
             summary="Snooze until a time (member+): no webhook until then; then it fires again if not resolved")
async def snooze(alert_id: UUID, body: SnoozeIn, request: Request, caller: WriterCaller, pool: Pool,
                 ip: ClientIp) -> Alert:
    until = _snooze_end(body)
    return await _change(request, caller, pool, ip, alert_id, "alert.snoozed", "snoozed",
                         lambda audit: incidents.snooze(pool, caller.project.id, alert_id, until, caller.actor, audit))


@router.post("/{alert_id}/resolve", response_model=Alert, responses=_ERRORS,
             summary="Resolve (member+): its receiver gets a `resolved` webhook")
async def resolve(alert_id: UUID, request: Request, caller: WriterCaller, pool: Pool, ip: ClientIp) -> Alert:
    return await _change(request, caller, pool, ip, alert_id, "alert.resolved", "resolved",
                         lambda audit: incidents.resolve(pool, caller.project.id, alert_id, caller.actor, audit))
