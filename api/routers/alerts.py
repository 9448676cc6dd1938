"""Alert rules of the caller's project: what should call a webhook. Config only; issue 6 fires them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, Union
from uuid import UUID

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, HttpUrl, field_validator

from api.cursor import decode_cursor, page
from api.deps import ClientIp, CurrentProject, Pool, WriterCaller
from api.fields import RequestBody, invalid_field
from api.models import errors
from api.repositories.alert_rules import UnknownSlo, create_rule, delete_rule, get_rule, list_rules, replace_rule
from api.repositories.audit import Actor
from schemas.session import HealthTag

router = APIRouter(prefix="/api/alerts/rules", tags=["alerts"])
_CHANGE = errors({403: "needs the member role", 404: "no such alert rule in this project"})
RuleKind = Literal["session_tagged", "slo_breached", "mcp_server_down", "mcp_server_recovered", "cost_budget_crossed"]


class _Rule(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    webhook_url: HttpUrl = Field(description="http(s) URL the alert is POSTed to")
    secret: str | None = Field(default=None, min_length=16, max_length=256, description=(
        "signs each webhook body; never returned. On PUT: omitted keeps the stored one, null removes it"))
    enabled: bool = True
    cooldown_seconds: int = Field(default=300, ge=0, le=7 * 24 * 3600,
                                  description="least time between two firings of this rule")

    @field_validator("webhook_url")
    @classmethod
    def _length(cls, url: HttpUrl) -> HttpUrl:
        if len(str(url)) > 2048:
            raise ValueError("a webhook URL may be at most 2048 characters")
        return url


class SessionTaggedRule(_Rule):
    """Fires when a session gets one of `tags`."""
    kind: Literal["session_tagged"]
    tags: list[HealthTag] = Field(min_length=1)

    @field_validator("tags")
    @classmethod
    def _distinct(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class SloBreachedRule(_Rule):
    """Fires when the SLO `slo_id`, of the same project, becomes breached."""
    kind: Literal["slo_breached"]
    slo_id: UUID


class McpServerRule(_Rule):
    """Fires when MCP server `server_name` goes down (or recovers); no server_name: any server."""
    kind: Literal["mcp_server_down", "mcp_server_recovered"]
    server_name: str | None = Field(default=None, min_length=1, max_length=256)


class CostBudgetRule(_Rule):
    """Fires when the project's cost over the last `window_hours` goes above `budget_usd`."""
    kind: Literal["cost_budget_crossed"]
    budget_usd: Decimal = Field(gt=0, max_digits=14, decimal_places=6)
    window_hours: float = Field(gt=0, le=2160, allow_inf_nan=False)


AlertRuleIn = Annotated[Union[SessionTaggedRule, SloBreachedRule, McpServerRule, CostBudgetRule], Field(discriminator="kind")]


class AlertRuleOut(BaseModel):
    id: UUID
    name: str
    kind: RuleKind
    tags: list[HealthTag] | None
    slo_id: UUID | None
    server_name: str | None
    budget_usd: Decimal | None
    window_hours: float | None
    webhook_url: str
    has_secret: bool
    enabled: bool
    cooldown_seconds: int
    created_at: datetime
    updated_at: datetime


class AlertRulePage(BaseModel):
    items: list[AlertRuleOut]
    next_cursor: str | None


def _fields(rule: _Rule) -> dict:
    values = rule.model_dump()
    values["webhook_url"] = str(rule.webhook_url)
    return values


def _unknown_slo(error: UnknownSlo) -> HTTPException:
    return invalid_field(("body", "slo_id"), str(error))


@router.get("", response_model=AlertRulePage, responses=errors({400: "malformed cursor"}), summary="Alert rules of the project")
async def rules(project: CurrentProject, pool: Pool, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                cursor: str | None = None) -> AlertRulePage:
    after = decode_cursor(cursor, datetime, UUID) if cursor else None
    rows, next_cursor = page(await list_rules(pool, project.id, limit + 1, after), limit,
                             lambda r: (r["created_at"], r["id"]))
    return AlertRulePage(items=[AlertRuleOut(**row) for row in rows], next_cursor=next_cursor)


@router.post("", response_model=AlertRuleOut, status_code=status.HTTP_201_CREATED,
             responses=errors({403: "needs the member role"}),
             summary="Add an alert rule (member+)")
async def add_rule(body: Annotated[AlertRuleIn, Body()], caller: WriterCaller, pool: Pool, ip: ClientIp) -> AlertRuleOut:
    try:
        return AlertRuleOut(**await create_rule(pool, caller.project.id, _fields(body), Actor(caller.actor, ip)))
    except UnknownSlo as error:
        raise _unknown_slo(error) from error


@router.get("/{rule_id}", response_model=AlertRuleOut, responses=errors({404: "no such alert rule in this project"}), summary="One alert rule")
async def rule(rule_id: UUID, project: CurrentProject, pool: Pool) -> AlertRuleOut:
    found = await get_rule(pool, project.id, rule_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id} in this project")
    return AlertRuleOut(**found)


@router.put("/{rule_id}", response_model=AlertRuleOut, responses=_CHANGE,
            summary="Replace an alert rule (member+); an omitted secret is kept, a null one removed")
async def change_rule(rule_id: UUID, body: Annotated[AlertRuleIn, Body()], caller: WriterCaller, pool: Pool,
                      ip: ClientIp) -> AlertRuleOut:
    try:
        found = await replace_rule(pool, caller.project.id, rule_id, _fields(body), body.secret,
                                   keep_secret="secret" not in body.model_fields_set, actor=Actor(caller.actor, ip))
    except UnknownSlo as error:
        raise _unknown_slo(error) from error
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id} in this project")
    return AlertRuleOut(**found)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_CHANGE,
               summary="Delete an alert rule (member+)")
async def remove_rule(rule_id: UUID, caller: WriterCaller, pool: Pool, ip: ClientIp) -> Response:
    if not await delete_rule(pool, caller.project.id, rule_id, Actor(caller.actor, ip)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id} in this project")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
