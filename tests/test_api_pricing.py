"""Model pricing through the API: reads for any key, writes for the operator, periods that never overlap."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.clickhouse_seed import new_project
from tests.test_api_sql import client_for

pytestmark = pytest.mark.anyio
TOKEN = "operator-token-for-pricing-tests"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def keys(settings):
    _, keys = await new_project(settings.postgres_dsn, "pricing", ("admin", "viewer"))
    return keys


def _model() -> str:
    return f"test-model-{uuid.uuid4().hex[:8]}"


def _price(model_id, start, input_price="1.5", output_price="6", **fields):
    return {"model_id": model_id, "effective_from": start, "input_usd_per_mtok": input_price,
            "output_usd_per_mtok": output_price, **fields}


async def _audit(settings, price_ids):
    connection = await asyncpg.connect(settings.postgres_dsn)
    try:
        rows = await connection.fetch("SELECT action, actor FROM audit_logs WHERE target = ANY($1::text[]) ORDER BY id",
                                      [str(i) for i in price_ids])
    finally:
        await connection.close()
    return [(row["action"], row["actor"]) for row in rows]


async def _history(client, key, model_id):
    answer = await client.get("/api/pricing", params={"model_id": model_id}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    return [(p["effective_from"][:10], p["effective_to"] and p["effective_to"][:10], p["input_usd_per_mtok"])
            for p in answer.json()["items"]]


async def test_any_key_reads_the_price_book_and_its_history(settings, store, keys):
    async with client_for(settings, store, operator_token=TOKEN) as client:
        viewer = {"X-API-Key": keys["viewer"]}
        o3 = (await client.get("/api/pricing", params={"model_id": "o3"}, headers=viewer)).json()["items"]
        assert [(p["effective_to"] is None, p["input_usd_per_mtok"]) for p in o3] == [(False, "10.000000"), (True, "2.000000")]
        current = (await client.get("/api/pricing", params={"model_id": "o3", "current": True}, headers=viewer)).json()
        assert [p["input_usd_per_mtok"] for p in current["items"]] == ["2.000000"]
        # Pages follow one another without gaps or repeats.
        seen, cursor = [], None
        while True:
            page = (await client.get("/api/pricing", params={"limit": 7, **({"cursor": cursor} if cursor else {})},
                                     headers=viewer)).json()
            seen += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        everything = (await client.get("/api/pricing", params={"limit": 1000}, headers=viewer)).json()["items"]
        assert seen == [p["id"] for p in everything] and len(seen) > 7
        assert (await client.get("/api/pricing")).status_code == 401
        bad = await client.get("/api/pricing", params={"cursor": "zzz"}, headers=viewer)
        assert bad.status_code == 400


async def test_only_the_operator_changes_prices(settings, store, keys):
    async with client_for(settings, store, operator_token=TOKEN) as client:
        body = _price(_model(), "2025-01-01T00:00:00Z", provider="acme", display_name="Acme")
        for headers in ({}, {"X-API-Key": keys["admin"]}, {"Authorization": f"Bearer {keys['admin']}"},
                        {"Authorization": "Bearer wrong"}):
            answer = await client.post("/api/pricing", json=body, headers=headers)
            assert answer.status_code == 401 and "operator token" in answer.json()["detail"], answer.text
        assert (await client.post("/api/pricing", json=body, headers=OPERATOR)).status_code == 201


async def test_a_new_price_closes_the_one_in_force_and_never_overlaps(settings, store, keys):
    model = _model()
    async with client_for(settings, store, operator_token=TOKEN) as client:
        first = await client.post("/api/pricing", headers=OPERATOR, json=_price(
            model, "2025-01-01T00:00:00Z", "1", provider="acme", display_name="Acme One"))
        assert first.status_code == 201, first.text
        assert first.json()["closed"] is None
        assert first.json()["price"]["cache_read_usd_per_mtok"] == "1.000000"  # defaults to the input price
        assert first.json()["price"]["thinking_usd_per_mtok"] == "6.000000"  # and thinking to output

        later = await client.post("/api/pricing", headers=OPERATOR, json=_price(model, "2025-06-01T00:00:00Z", "2"))
        assert later.status_code == 201, later.text
        assert later.json()["closed"]["effective_to"].startswith("2025-06-01")
        assert later.json()["price"]["provider"] == "acme"  # copied from the row it replaces

        # A price between two rows takes over until the next one; one before all ends at the first.
        assert (await client.post("/api/pricing", headers=OPERATOR, json=_price(model, "2025-03-01T00:00:00Z", "3"))).status_code == 201
        assert (await client.post("/api/pricing", headers=OPERATOR, json=_price(model, "2024-06-01T00:00:00Z", "4"))).status_code == 201
        assert await _history(client, keys["viewer"], model) == [
            ("2024-06-01", "2025-01-01", "4.000000"), ("2025-01-01", "2025-03-01", "1.000000"),
            ("2025-03-01", "2025-06-01", "3.000000"), ("2025-06-01", None, "2.000000")]

        same = await client.post("/api/pricing", headers=OPERATOR, json=_price(model, "2025-06-01T00:00:00Z", "9"))
        assert same.status_code == 409 and "already starts" in same.json()["detail"]

        rows = (await client.get("/api/pricing", params={"model_id": model}, headers={"X-API-Key": keys["viewer"]})).json()["items"]
        # Corrections: a mistyped figure is overwritten; a period stretched over its neighbour is a 409.
        fixed = await client.patch(f"/api/pricing/{rows[1]['id']}", headers=OPERATOR, json={"input_usd_per_mtok": "1.25"})
        assert fixed.status_code == 200 and fixed.json()["input_usd_per_mtok"] == "1.250000"
        overlap = await client.patch(f"/api/pricing/{rows[1]['id']}", headers=OPERATOR, json={"effective_to": "2025-04-01T00:00:00Z"})
        assert overlap.status_code == 409 and "overlap" in overlap.json()["detail"]
        backwards = await client.patch(f"/api/pricing/{rows[1]['id']}", headers=OPERATOR, json={"effective_to": "2024-01-01T00:00:00Z"})
        assert backwards.status_code == 422 and "end after it starts" in backwards.json()["detail"][0]["msg"]
        logged = await _audit(settings, [row["id"] for row in rows])
        assert [action for action, _ in logged] == ["price.added"] * 4 + ["price.corrected"]
        assert {actor for _, actor in logged} == {"operator"}
        missing = await client.patch(f"/api/pricing/{uuid.uuid4()}", headers=OPERATOR, json={"input_usd_per_mtok": "1"})
        assert missing.status_code == 404
        assert (await client.patch(f"/api/pricing/{rows[1]['id']}", json={"input_usd_per_mtok": "1"})).status_code == 401


@pytest.mark.parametrize("body, needle", [
    (_price("GPT-4o", "2025-01-01T00:00:00Z", provider="x", display_name="x"), "should match pattern"),
    (_price("openai/gpt-4o", "2025-01-01T00:00:00Z", provider="x", display_name="x"), "should match pattern"),
    (_price("m", "2025-01-01T00:00:00Z", "-1", provider="x", display_name="x"), "greater than or equal to 0"),
    (_price("m", "2025-01-01T00:00:00Z", "1.0000001", provider="x", display_name="x"), "decimal places"),
    (_price("m", "2025-01-01T00:00:00Z", "12345678", provider="x", display_name="x"), "digits"),
    (_price("m", "2025-01-01T00:00:00", provider="x", display_name="x"), "timezone"),
    ({"model_id": "m", "effective_from": "2025-01-01T00:00:00Z"}, "input_usd_per_mtok"),
])
async def test_bad_prices_are_422_with_the_reason(settings, store, body, needle):
    async with client_for(settings, store, operator_token=TOKEN) as client:
        answer = await client.post("/api/pricing", headers=OPERATOR, json=body)
    assert answer.status_code == 422, answer.text
    assert needle in answer.text


async def test_a_new_model_needs_its_provider_and_name(settings, store):
    async with client_for(settings, store, operator_token=TOKEN) as client:
        answer = await client.post("/api/pricing", headers=OPERATOR, json=_price(_model(), "2025-01-01T00:00:00Z"))
        assert answer.status_code == 422 and "provider and display_name" in answer.json()["detail"][0]["msg"]
        null = await client.patch(f"/api/pricing/{uuid.uuid4()}", headers=OPERATOR, json={"input_usd_per_mtok": None})
        assert null.status_code == 422 and "may not be null" in null.text
