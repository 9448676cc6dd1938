"""Logins, lockout, login tokens acting in a project, invites and the create-user command,
through the app with its lifespan on real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from tests.metadata import PASSWORD, admin_key, api, bearer, login, new_user, unique

pytestmark = pytest.mark.anyio


async def test_login_me_and_logout(settings):
    project = unique("auth")
    email = await new_user(settings, project)
    async with api(settings) as client:
        response = await client.post("/api/auth/login", json={"email": email.upper(), "password": PASSWORD})
        assert response.status_code == 200, response.text
        token = response.json()["token"]
        assert response.json()["user"]["email"] == email and token.startswith("sst_")

        me = await client.get("/api/auth/me", headers=bearer(token))
        assert me.status_code == 200
        assert [(p["slug"], p["role"]) for p in me.json()["projects"]] == [(project, "admin")]
        # The token acts in the project named by X-Project, by slug or by id.
        by_slug = await client.get("/api/audit/logs", headers=bearer(token, project))
        assert by_slug.status_code == 200, by_slug.text
        project_id = me.json()["projects"][0]["id"]
        assert (await client.get("/api/audit/logs", headers=bearer(token, project_id))).status_code == 200
        without = await client.get("/api/audit/logs", headers=bearer(token))
        assert without.status_code == 400 and "X-Project" in without.json()["detail"]

        assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 204
        after = await client.get("/api/auth/me", headers=bearer(token))
        assert after.status_code == 401 and "logged out" in after.json()["detail"]
        assert (await client.get("/api/auth/me")).status_code == 401


async def test_wrong_password_and_unknown_email_look_the_same(settings):
    email = await new_user(settings, unique("auth"))
    async with api(settings) as client:
        wrong = await client.post("/api/auth/login", json={"email": email, "password": "not it at all"})
        unknown = await client.post("/api/auth/login", json={"email": f"nobody-{email}", "password": PASSWORD})
        forged = await client.get("/api/auth/me", headers=bearer("sst_forged"))
        empty = await client.post("/api/auth/login", json={"email": email})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong email or password"}
    assert forged.status_code == 401
    assert empty.status_code == 422


async def test_failed_logins_lock_the_account_across_restarts(settings):
    email = await new_user(settings, unique("lock"))
    wrong = {"email": email, "password": "guess-guess"}
    async with api(settings, login_max_failures=3, login_lockout_seconds=900) as client:
        assert [(await client.post("/api/auth/login", json=wrong)).status_code for _ in range(2)] == [401, 401]
        third = await client.post("/api/auth/login", json=wrong)
        assert third.status_code == 423 and "locked" in third.json()["detail"]
        right = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert right.status_code == 423 and 0 < int(right.headers["Retry-After"]) <= 900
    # A new process on the same database: the lock is still there.
    async with api(settings, login_max_failures=3, login_lockout_seconds=900) as restarted:
        again = await restarted.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert again.status_code == 423, again.text
        assert "try again in" in again.json()["detail"]


async def test_a_lockout_ends_and_a_success_resets_the_count(settings):
    email = await new_user(settings, unique("lock"))
    wrong = {"email": email, "password": "guess-guess"}
    right = {"email": email, "password": PASSWORD}
    async with api(settings, login_max_failures=2, login_lockout_seconds=1) as client:
        assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
        assert (await client.post("/api/auth/login", json=right)).status_code == 200
        # The success reset the count: one more failure does not lock.
        assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
        assert (await client.post("/api/auth/login", json=wrong)).status_code == 423
        assert (await client.post("/api/auth/login", json=right)).status_code == 423
        await asyncio.sleep(1.2)
        assert (await client.post("/api/auth/login", json=right)).status_code == 200


async def test_login_events_are_audited_for_the_members_project(settings):
    project = unique("audit")
    admin = await new_user(settings, project)
    async with api(settings, login_max_failures=2) as client:
        for _ in range(2):
            await client.post("/api/auth/login", json={"email": admin, "password": "guess-guess"})
        await client.post("/api/auth/login", json={"email": admin, "password": PASSWORD})
        # The admin is locked out now; an admin key of the project reads the log.
        key = await admin_key(settings, project)
        logs = (await client.get("/api/audit/logs", headers={"X-API-Key": key})).json()["items"]
    actions = [e["action"] for e in logs if e["target"] == f"user:{admin}"]
    assert actions[:3] == ["auth.login_locked", "auth.login_locked", "auth.login_failed"]
    failed = next(e for e in logs if e["action"] == "auth.login_failed")
    assert failed["actor"] == f"user:{admin}" and failed["client_ip"] == "127.0.0.1"
    assert failed["details"] == {"reason": "wrong password", "failures": 1}


async def test_a_login_token_sees_only_projects_it_belongs_to(settings):
    mine, theirs = unique("mine"), unique("theirs")
    email = await new_user(settings, mine)
    await new_user(settings, theirs)
    async with api(settings) as client:
        token = await login(client, email)
        other = await client.get(f"/api/projects/{theirs}", headers=bearer(token))
        missing = await client.get("/api/projects/no-such-project", headers=bearer(token))
        via_header = await client.get("/api/audit/logs", headers=bearer(token, theirs))
        own = await client.get(f"/api/projects/{mine}", headers=bearer(token))
    assert other.status_code == missing.status_code == via_header.status_code == 404
    assert other.json()["detail"] == f"no project {theirs}"
    assert own.status_code == 200 and own.json()["role"] == "admin"


async def _invite(client, token, project, email, role="member", **extra):
    response = await client.post(f"/api/projects/{project}/invites", headers=bearer(token),
                                 json={"email": email, "role": role, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def test_invites_create_accounts_and_join_projects(settings):
    project = unique("invite")
    admin = await new_user(settings, project)
    newcomer = f"{unique('new')}@example.com"
    async with api(settings) as client:
        token = await login(client, admin)
        invite = await _invite(client, token, project, newcomer.upper(), "viewer")
        assert invite["email"] == newcomer and invite["state"] == "pending" and invite["token"].startswith("ssi_")

        no_password = await client.post("/api/auth/accept-invite", json={"token": invite["token"]})
        assert no_password.status_code == 400 and "password" in no_password.json()["detail"]
        short = await client.post("/api/auth/accept-invite", json={"token": invite["token"], "password": "short"})
        assert short.status_code == 400 and "at least 8" in short.json()["detail"]
        accepted = await client.post("/api/auth/accept-invite",
                                     json={"token": invite["token"], "password": "a new long password"})
        assert accepted.status_code == 200, accepted.text
        assert (accepted.json()["role"], accepted.json()["project"]["slug"]) == ("viewer", project)
        viewer_token = accepted.json()["token"]
        me = (await client.get("/api/auth/me", headers=bearer(viewer_token))).json()
        assert [(p["slug"], p["role"]) for p in me["projects"]] == [(project, "viewer")]
        assert (await login(client, newcomer, "a new long password")).startswith("sst_")

        reused = await client.post("/api/auth/accept-invite",
                                   json={"token": invite["token"], "password": "a new long password"})
        assert reused.status_code == 410 and "already accepted" in reused.json()["detail"]
        unknown = await client.post("/api/auth/accept-invite", json={"token": "ssi_nope", "password": PASSWORD})
        assert unknown.status_code == 404

        states = {i["email"]: i["state"] for i in
                  (await client.get(f"/api/projects/{project}/invites", headers=bearer(token))).json()["items"]}
        assert states == {newcomer: "accepted"}
        assert "token" not in (await client.get(f"/api/projects/{project}/invites", headers=bearer(token))).json()["items"][0]


async def test_an_existing_user_accepts_with_their_password(settings):
    project, elsewhere = unique("invite"), unique("home")
    admin = await new_user(settings, project)
    existing = await new_user(settings, elsewhere)
    async with api(settings) as client:
        token = await login(client, admin)
        invite = await _invite(client, token, project, existing)
        bare = await client.post("/api/auth/accept-invite", json={"token": invite["token"]})
        assert bare.status_code == 400 and "already has an account" in bare.json()["detail"]
        wrong = await client.post("/api/auth/accept-invite", json={"token": invite["token"], "password": "not mine!"})
        assert wrong.status_code == 401
        right = await client.post("/api/auth/accept-invite", json={"token": invite["token"], "password": PASSWORD})
        assert right.status_code == 200 and right.json()["role"] == "member"
        me = (await client.get("/api/auth/me", headers=bearer(right.json()["token"]))).json()
        assert sorted(p["slug"] for p in me["projects"]) == sorted([project, elsewhere])
        # Already a member: inviting them again is refused (their role is changed instead).
        again = await client.post(f"/api/projects/{project}/invites", headers=bearer(token),
                                  json={"email": existing, "role": "admin"})
        assert again.status_code == 409 and "already a member" in again.json()["detail"]


async def test_revoked_and_expired_invites_are_refused(settings):
    project = unique("invite")
    admin = await new_user(settings, project)
    async with api(settings) as client:
        token = await login(client, admin)
        revoked = await _invite(client, token, project, f"{unique('r')}@example.com")
        assert (await client.delete(f"/api/projects/{project}/invites/{revoked['id']}",
                                    headers=bearer(token))).status_code == 204
        expiring = await _invite(client, token, project, f"{unique('e')}@example.com", expires_in_hours=0.0002)
        await asyncio.sleep(1.0)
        body = {"password": "a long enough password"}
        gone_revoked = await client.post("/api/auth/accept-invite", json={"token": revoked["token"], **body})
        gone_expired = await client.post("/api/auth/accept-invite", json={"token": expiring["token"], **body})
        bad_email = await client.post(f"/api/projects/{project}/invites", headers=bearer(token),
                                      json={"email": "not an email", "role": "member"})
        bad_id = await client.delete(f"/api/projects/{project}/invites/not-a-uuid", headers=bearer(token))
    assert gone_revoked.status_code == 410 and "revoked" in gone_revoked.json()["detail"]
    assert gone_expired.status_code == 410 and "expired" in gone_expired.json()["detail"]
    assert bad_email.status_code == 400 and "not an email" in bad_email.json()["detail"]
    assert bad_id.status_code == 422


def _cli(settings, *args, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "SPANSTREAM_POSTGRES_DSN": settings.postgres_dsn}
    return subprocess.run([sys.executable, "-m", "spanstream.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


async def test_create_user_command_bootstraps_the_first_admin(settings):
    project = unique("boot")
    email = f"{unique('first')}@example.com"
    made = _cli(settings, "create-user", email, "--project", project, "--role", "admin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert f"new user {email} is now admin of project {project}" in made.stdout
    short = _cli(settings, "create-user", f"x{email}", "--project", project, stdin="short\n")
    assert short.returncode != 0 and "at least 8" in short.stderr
    twice = _cli(settings, "create-user", email, "--project", project)
    assert twice.returncode != 0 and "already a member" in twice.stderr
    async with api(settings) as client:
        token = await login(client, email)
        got = await client.get(f"/api/projects/{project}", headers=bearer(token))
    assert got.status_code == 200 and got.json()["role"] == "admin"


async def test_values_postgres_cannot_store_are_a_400(settings):
    project = unique("nul")
    email = await new_user(settings, project)
    async with api(settings) as client:
        login_nul = await client.post("/api/auth/login", json={"email": "a\u0000@example.com", "password": "x"})
        token = await login(client, email)
        name_nul = await client.post("/api/projects", headers=bearer(token), json={"slug": unique("n"), "name": "a\u0000"})
        action_nul = await client.get("/api/audit/logs", headers=bearer(token, project), params={"action": "a\u0000"})
    assert login_nul.status_code == name_nul.status_code == action_nul.status_code == 400
    assert "cannot be stored" in login_nul.json()["detail"]


async def test_concurrent_guesses_cannot_exceed_the_failure_limit(settings):
    email = await new_user(settings, unique("race"))
    wrong = {"email": email, "password": "guess-guess"}
    async with api(settings, login_max_failures=5) as client:
        answers = await asyncio.gather(*(client.post("/api/auth/login", json=wrong) for _ in range(12)))
    statuses = sorted(answer.status_code for answer in answers)
    # Four failures are let through; the fifth locks, and every guess after it meets the lock.
    assert statuses == [401] * 4 + [423] * 8


async def test_create_user_migrates_a_fresh_database_first(settings):
    database = f"spanstream_test_{unique('fresh').replace('-', '_')}"
    admin_dsn = settings.postgres_dsn.rsplit("/", 1)[0] + "/postgres"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{database}"')
        fresh = settings.model_copy(update={"postgres_dsn": settings.postgres_dsn.rsplit("/", 1)[0] + f"/{database}"})
        made = _cli(fresh, "create-user", "first@example.com", "--project", "default", stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        async with api(fresh) as client:
            assert (await login(client, "first@example.com")).startswith("sst_")
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.close()


async def test_a_logged_in_invitee_needs_no_password(settings):
    project, elsewhere = unique("invite"), unique("home")
    admin = await new_user(settings, project)
    invitee = await new_user(settings, elsewhere)
    async with api(settings) as client:
        admin_token, invitee_token = await login(client, admin), await login(client, invitee)
        invite = await _invite(client, admin_token, project, invitee, "viewer")
        # Someone else's login does not accept it for them.
        wrong_person = await client.post("/api/auth/accept-invite", headers=bearer(admin_token),
                                         json={"token": invite["token"]})
        assert wrong_person.status_code == 403 and invitee in wrong_person.json()["detail"]
        joined = await client.post("/api/auth/accept-invite", headers=bearer(invitee_token),
                                   json={"token": invite["token"]})
        assert joined.status_code == 200, joined.text
        got = await client.get(f"/api/projects/{project}", headers=bearer(invitee_token))
        assert got.status_code == 200 and got.json()["role"] == "viewer"
        # An API key is not a login: /me and logout want a user.
        key = await admin_key(settings, project)
        assert (await client.get("/api/auth/me", headers={"X-API-Key": key})).status_code == 403
        assert (await client.post("/api/auth/logout", headers={"X-API-Key": key})).status_code == 403


async def test_one_address_failing_across_many_accounts_is_blocked_and_audited(settings):
    project = unique("ipblock")
    admin = await new_user(settings, project)
    others = [await new_user(settings, unique("ipblock")) for _ in range(3)]
    connection = await asyncpg.connect(settings.postgres_dsn)
    try:
        await connection.execute("DELETE FROM login_ip_failures")  # other tests' servers log in from here too
    finally:
        await connection.close()
    async with api(settings, login_max_failures=5, login_ip_max_failures=4, login_ip_block_seconds=900) as client:
        # One wrong guess per account: no account reaches its own lockout.
        answers = [(await client.post("/api/auth/login", json={"email": email, "password": "guess-guess"})).status_code
                   for email in [*others, f"nobody-{admin}"]]
        assert answers == [401, 401, 401, 401]
        # The address is blocked now, even with the right password.
        blocked = await client.post("/api/auth/login", json={"email": admin, "password": PASSWORD})
        assert blocked.status_code == 429, blocked.text
        assert "this address" in blocked.json()["detail"] and 0 < int(blocked.headers["Retry-After"]) <= 900
        key = await admin_key(settings, project)
    # It holds for a new process, and the accounts themselves are not locked: from another
    # address the right password works.
    async with api(settings, login_ip_max_failures=4) as restarted:
        again = await restarted.post("/api/auth/login", json={"email": admin, "password": PASSWORD})
        assert again.status_code == 429
        connection = await asyncpg.connect(settings.postgres_dsn)
        try:
            blocks = await connection.fetchval(
                "SELECT count(*) FROM audit_logs WHERE action = 'auth.ip_blocked' AND actor = $1", f"user:nobody-{admin}")
            await connection.execute("DELETE FROM login_ip_failures")
        finally:
            await connection.close()
        assert blocks == 1
        assert (await restarted.post("/api/auth/login", json={"email": admin, "password": PASSWORD})).status_code == 200
        assert (await restarted.get("/api/audit/logs", headers={"X-API-Key": key})).status_code == 200
