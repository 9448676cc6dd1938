"""Projects, members, API keys and the audit log: roles, isolation between projects, and what
a revoked key does, through the app with its lifespan on real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from spanstream.kafka import ensure_topics
from tests.kafka_helpers import read_all_spans
from tests.metadata import PASSWORD, admin_key, api, bearer, login, new_user, unique
from tests.test_api_ingest import langsight_span

pytestmark = pytest.mark.anyio


async def _join(client, admin_token, project, role):
    """A new user invited into `project` with `role`; returns (email, token, user_id)."""
    email = f"{unique(role)}@example.com"
    invite = await client.post(f"/api/projects/{project}/invites", headers=bearer(admin_token),
                               json={"email": email, "role": role})
    assert invite.status_code == 201, invite.text
    accepted = await client.post("/api/auth/accept-invite", json={"token": invite.json()["token"], "password": PASSWORD})
    assert accepted.status_code == 200, accepted.text
    return email, accepted.json()["token"], accepted.json()["user"]["id"]


async def test_create_list_rename_and_delete_projects(settings):
    home = unique("home")
    email = await new_user(settings, home)
    slugs = sorted(unique("p") for _ in range(3))
    async with api(settings) as client:
        token = await login(client, email)
        for slug in slugs:
            made = await client.post("/api/projects", headers=bearer(token), json={"slug": slug, "name": f"Project {slug}"})
            assert made.status_code == 201 and made.json()["role"] == "admin", made.text
        taken = await client.post("/api/projects", headers=bearer(token), json={"slug": slugs[0]})
        bad_slug = await client.post("/api/projects", headers=bearer(token), json={"slug": "Not A Slug"})
        assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
        assert bad_slug.status_code == 422

        first = (await client.get("/api/projects", headers=bearer(token), params={"limit": 2})).json()
        rest = (await client.get("/api/projects", headers=bearer(token),
                                 params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [p["slug"] for p in first["items"] + rest["items"]] == sorted([home, *slugs])
        assert rest["next_cursor"] is None
        garbled = await client.get("/api/projects", headers=bearer(token), params={"cursor": "%%%"})
        assert garbled.status_code == 400 and "cursor" in garbled.json()["detail"]

        renamed_slug = unique("renamed")
        renamed = await client.patch(f"/api/projects/{slugs[0]}", headers=bearer(token),
                                     json={"name": "Renamed", "slug": renamed_slug})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
        assert (await client.get(f"/api/projects/{slugs[0]}", headers=bearer(token))).status_code == 404
        assert (await client.get("/api/audit/logs", headers=bearer(token, renamed_slug))).status_code == 200
        clash = await client.patch(f"/api/projects/{renamed_slug}", headers=bearer(token), json={"slug": slugs[1]})
        assert clash.status_code == 409
        empty = await client.patch(f"/api/projects/{renamed_slug}", headers=bearer(token), json={})
        assert empty.status_code == 400

        key = await admin_key(settings, slugs[2])
        assert (await client.delete(f"/api/projects/{slugs[2]}", headers=bearer(token))).status_code == 204
        assert (await client.get(f"/api/projects/{slugs[2]}", headers=bearer(token))).status_code == 404
        # Its keys went with it.
        assert (await client.get("/api/projects", headers={"X-API-Key": key})).status_code == 401


async def test_api_keys_list_and_create_projects_differently_from_users(settings):
    project = unique("keys")
    await new_user(settings, project)
    key = await admin_key(settings, project)
    async with api(settings) as client:
        mine = await client.get("/api/projects", headers={"X-API-Key": key})
        create = await client.post("/api/projects", headers={"X-API-Key": key}, json={"slug": unique("x")})
    assert [(p["slug"], p["role"]) for p in mine.json()["items"]] == [(project, "admin")]
    assert create.status_code == 403 and "login token" in create.json()["detail"]


async def test_roles_decide_who_may_write(settings):
    project = unique("roles")
    admin = await new_user(settings, project)
    async with api(settings) as client:
        admin_token = await login(client, admin)
        _, member, member_id = await _join(client, admin_token, project, "member")
        _, viewer, viewer_id = await _join(client, admin_token, project, "viewer")
        p = f"/api/projects/{project}"

        # Everyone may read the project and its members.
        for token in (admin_token, member, viewer):
            assert (await client.get(p, headers=bearer(token))).status_code == 200
            assert (await client.get(f"{p}/members", headers=bearer(token))).status_code == 200
        # A viewer cannot write spans; a member can get past the role check.
        span_post = {"headers": bearer(viewer, project), "json": []}
        viewer_spans = await client.post("/api/traces/spans", **span_post)
        assert viewer_spans.status_code == 403 and "member role" in viewer_spans.json()["detail"]
        # Members and viewers cannot manage the project, its members, keys or invites.
        for token in (member, viewer):
            writes = [
                client.patch(p, headers=bearer(token), json={"name": "mine now"}),
                client.delete(p, headers=bearer(token)),
                client.patch(f"{p}/members/{viewer_id}", headers=bearer(token), json={"role": "admin"}),
                client.delete(f"{p}/members/{viewer_id}", headers=bearer(token)),
                client.post(f"{p}/keys", headers=bearer(token), json={"name": "k", "role": "admin"}),
                client.get(f"{p}/keys", headers=bearer(token)),
                client.post(f"{p}/invites", headers=bearer(token), json={"email": "x@example.com"}),
                client.get(f"{p}/invites", headers=bearer(token)),
                client.get("/api/audit/logs", headers=bearer(token, project)),
            ]
            statuses = [(await request).status_code for request in writes]
            assert statuses == [403] * len(writes)
        denied = await client.post(f"{p}/keys", headers=bearer(member), json={"name": "k"})
        assert denied.json()["detail"] == "this needs the admin role in the project; the caller has member"

        # A key acts with its role too.
        viewer_key = await admin_key(settings, project, "viewer")
        assert (await client.post(f"{p}/keys", headers={"X-API-Key": viewer_key}, json={"name": "k"})).status_code == 403
        assert (await client.post("/api/traces/spans", headers={"X-API-Key": viewer_key}, json=[])).status_code == 403


async def test_the_last_admin_stays(settings):
    project = unique("admins")
    admin = await new_user(settings, project)
    async with api(settings) as client:
        token = await login(client, admin)
        p = f"/api/projects/{project}"
        admin_id = (await client.get("/api/auth/me", headers=bearer(token))).json()["id"]
        demote = await client.patch(f"{p}/members/{admin_id}", headers=bearer(token), json={"role": "member"})
        remove = await client.delete(f"{p}/members/{admin_id}", headers=bearer(token))
        assert demote.status_code == remove.status_code == 409
        assert "last admin" in demote.json()["detail"]

        _, member, member_id = await _join(client, token, project, "member")
        promoted = await client.patch(f"{p}/members/{member_id}", headers=bearer(token), json={"role": "admin"})
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        # Now there are two: the first admin may step down, and the new one may remove them.
        assert (await client.patch(f"{p}/members/{admin_id}", headers=bearer(token),
                                   json={"role": "viewer"})).status_code == 200
        assert (await client.delete(f"{p}/members/{admin_id}", headers=bearer(member))).status_code == 204
        assert (await client.get(p, headers=bearer(token))).status_code == 404
        members = (await client.get(f"{p}/members", headers=bearer(member))).json()["items"]
        assert [(m["user_id"], m["role"]) for m in members] == [(member_id, "admin")]
        bad_role = await client.patch(f"{p}/members/{member_id}", headers=bearer(member), json={"role": "owner"})
        not_member = await client.delete(f"{p}/members/{admin_id}", headers=bearer(member))
        bad_uuid = await client.delete(f"{p}/members/123", headers=bearer(member))
    assert bad_role.status_code == 422 and not_member.status_code == 404 and bad_uuid.status_code == 422


async def test_keys_are_shown_once_listed_and_revoked(settings):
    project = unique("keys")
    admin = await new_user(settings, project)
    # A second API process whose cache keeps a key for 1 s: a revoke reaches it within that.
    async with api(settings) as client, api(settings, api_key_cache_seconds=1) as other:
        token = await login(client, admin)
        p = f"/api/projects/{project}/keys"
        made = await client.post(p, headers=bearer(token), json={"name": "producer", "role": "member"})
        assert made.status_code == 201, made.text
        key = made.json()
        assert key["key"].startswith(key["prefix"] + "_") and key["role"] == "member"
        for app in (client, other):
            assert (await app.get("/api/projects", headers={"X-API-Key": key["key"]})).status_code == 200

        listed = (await client.get(p, headers=bearer(token))).json()["items"]
        assert [(k["id"], k["prefix"], k["name"], k["revoked_at"]) for k in listed] == \
            [(key["id"], key["prefix"], "producer", None)]
        assert "key" not in listed[0] and listed[0]["last_used_at"] is not None

        assert (await client.delete(f"{p}/{key['id']}", headers=bearer(token))).status_code == 204
        # The process that revoked it refuses it at once.
        refused = await client.get("/api/projects", headers={"X-API-Key": key["key"]})
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        await asyncio.sleep(1.1)
        assert (await other.get("/api/projects", headers={"X-API-Key": key["key"]})).status_code == 401

        listed = (await client.get(p, headers=bearer(token))).json()["items"]
        assert listed[0]["revoked_at"] is not None
        assert (await client.delete(f"{p}/{key['id']}", headers=bearer(token))).status_code == 204

        for name in ("a", "b"):
            await client.post(p, headers=bearer(token), json={"name": name})
        first = (await client.get(p, headers=bearer(token), params={"limit": 2})).json()
        rest = (await client.get(p, headers=bearer(token), params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [k["name"] for k in first["items"] + rest["items"]] == ["b", "a", "producer"]


async def test_nothing_of_another_project_is_visible(settings):
    a, b = unique("a"), unique("b")
    admin_a, admin_b = await new_user(settings, a), await new_user(settings, b)
    key_a = {"X-API-Key": await admin_key(settings, a)}
    async with api(settings) as client:
        token_a, token_b = await login(client, admin_a), await login(client, admin_b)
        b_key = (await client.post(f"/api/projects/{b}/keys", headers=bearer(token_b), json={"name": "b"})).json()
        b_invite = (await client.post(f"/api/projects/{b}/invites", headers=bearer(token_b),
                                      json={"email": "someone@example.com"})).json()
        b_admin_id = (await client.get("/api/auth/me", headers=bearer(token_b))).json()["id"]

        for caller in (key_a, bearer(token_a)):
            requests = [
                client.get(f"/api/projects/{b}", headers=caller),
                client.patch(f"/api/projects/{b}", headers=caller, json={"name": "x"}),
                client.delete(f"/api/projects/{b}", headers=caller),
                client.get(f"/api/projects/{b}/members", headers=caller),
                client.patch(f"/api/projects/{b}/members/{b_admin_id}", headers=caller, json={"role": "viewer"}),
                client.get(f"/api/projects/{b}/keys", headers=caller),
                client.delete(f"/api/projects/{b}/keys/{b_key['id']}", headers=caller),
                client.get(f"/api/projects/{b}/invites", headers=caller),
                # B's things addressed through A's own project are not found either.
                client.delete(f"/api/projects/{a}/keys/{b_key['id']}", headers=caller),
                client.delete(f"/api/projects/{a}/invites/{b_invite['id']}", headers=caller),
                client.patch(f"/api/projects/{a}/members/{b_admin_id}", headers=caller, json={"role": "viewer"}),
                client.delete(f"/api/projects/{a}/members/{b_admin_id}", headers=caller),
            ]
            assert [(await r).status_code for r in requests] == [404] * len(requests)
        # Naming B in X-Project is as lost as naming nothing, for a login token and for a key.
        assert (await client.get("/api/audit/logs", headers=bearer(token_a, b))).status_code == 404
        assert (await client.get("/api/audit/logs", headers={**key_a, "X-Project": b})).status_code == 404
        assert (await client.get("/api/audit/logs", headers={**key_a, "X-Project": a})).status_code == 200
        # B is intact.
        assert (await client.get("/api/projects", headers={"X-API-Key": b_key["key"]})).status_code == 200
        b_members = (await client.get(f"/api/projects/{b}/members", headers=bearer(token_b))).json()["items"]
        assert [m["role"] for m in b_members] == ["admin"]


async def test_the_audit_log_records_writes_newest_first(settings):
    project = unique("audit")
    admin = await new_user(settings, project)
    started = datetime.now(UTC)
    async with api(settings) as client:
        token = await login(client, admin)
        p = f"/api/projects/{project}"
        key = (await client.post(f"{p}/keys", headers=bearer(token), json={"name": "ci", "role": "viewer"})).json()
        await client.delete(f"{p}/keys/{key['id']}", headers=bearer(token))
        await client.patch(p, headers=bearer(token), json={"name": "Audited"})
        logs = await client.get("/api/audit/logs", headers=bearer(token, project))
        assert logs.status_code == 200, logs.text
        events = logs.json()["items"]
        actions = [e["action"] for e in events]
        assert actions[:4] == ["project.updated", "key.revoked", "key.created", "auth.login"]
        assert {"user.created", "member.added"} <= set(actions)
        created = events[2]
        assert created["actor"] == f"user:{admin}" and created["target"] == f"key:{key['prefix']}"
        assert created["client_ip"] == "127.0.0.1" and created["details"] == {"name": "ci", "role": "viewer"}
        assert datetime.fromisoformat(created["at"]) >= started
        assert events[0]["details"] == {"name": {"from": project, "to": "Audited"}}

        only = (await client.get("/api/audit/logs", headers=bearer(token, project),
                                 params={"action": "key.revoked"})).json()["items"]
        assert [e["target"] for e in only] == [f"key:{key['prefix']}"]
        first = (await client.get("/api/audit/logs", headers=bearer(token, project), params={"limit": 2})).json()
        second = (await client.get("/api/audit/logs", headers=bearer(token, project),
                                   params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [e["id"] for e in first["items"] + second["items"]] == [e["id"] for e in events[:4]]
        forged = await client.get("/api/audit/logs", headers=bearer(token, project), params={"cursor": "WzFd"})
        assert forged.status_code == 200  # a cursor we made: [1]
        broken = await client.get("/api/audit/logs", headers=bearer(token, project), params={"cursor": "WyJ4Il0"})
        assert broken.status_code == 400
        # Another project's admin sees none of it.
        other = await new_user(settings, unique("other"))
        other_token = await login(client, other)
        other_events = (await client.get("/api/audit/logs", headers=bearer(other_token, (await client.get(
            "/api/auth/me", headers=bearer(other_token))).json()["projects"][0]["slug"]))).json()["items"]
        assert all(e["project_id"] != events[0]["project_id"] for e in other_events)
        assert f"user:{admin}" not in {e["actor"] for e in other_events}


async def test_a_member_logged_in_publishes_spans_into_the_named_project(settings):
    project = unique("publish")
    admin = await new_user(settings, project)
    topic_settings = settings.model_copy(update={"spans_topic": unique("meta-spans")})
    ensure_topics(topic_settings)
    async with api(topic_settings) as client:
        token = await login(client, admin)
        _, member, _ = await _join(client, token, project, "member")
        project_id = (await client.get(f"/api/projects/{project}", headers=bearer(member))).json()["id"]
        posted = await client.post("/api/traces/spans", headers=bearer(member, project), json=[langsight_span()])
        assert posted.status_code == 207 and posted.json()["accepted"] == 1, posted.text
    [span] = read_all_spans(settings.kafka_bootstrap, topic_settings.spans_topic)
    assert span.project_id == project_id
