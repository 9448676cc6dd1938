"""Logging in and out with an email and password, who am I, and accepting an invite."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import AppSettings, ClientIp, CurrentUser, MaybeUser, Pool
from api.errors import BadRequest, Forbidden, Locked, Unauthorized
from api.models import AcceptedInvite, errors, AcceptInviteRequest, LoginRequest, LoginResponse, Me, ProjectOut, UserOut
from api.repositories.audit import Actor
from api.repositories import login_limits
from api.repositories.invites import accept_invite, invited_email
from api.repositories.members import projects_of_user
from api.repositories.users import authenticate, end_session, open_session, user_by_email

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=errors({}))

_LOGIN = {400: "malformed request", 401: "wrong email or password",
          423: "account locked after too many failed logins (Retry-After says how long)",
          429: "too many failed logins from this address (Retry-After says how long)"}


async def _authenticate(pool, settings, email: str, password: str, actor: Actor):
    """The user, with the account's lockout and the address's limit applied."""
    await login_limits.refuse_if_blocked(pool, actor.client_ip)
    try:
        return await authenticate(pool, email, password, settings.login_max_failures,
                                  settings.login_lockout_seconds, actor)
    except (Unauthorized, Locked):
        await login_limits.count_failure(pool, actor, settings.login_ip_max_failures,
                                         settings.login_ip_window_seconds, settings.login_ip_block_seconds)
        raise


@router.post("/login", responses=errors(_LOGIN), summary="Log in; the token authenticates like an API key")
async def login(body: LoginRequest, pool: Pool, settings: AppSettings, ip: ClientIp) -> LoginResponse:
    actor = Actor(f"user:{body.email.strip().lower()}", ip)
    user = await _authenticate(pool, settings, body.email, body.password, actor)
    session = await open_session(pool, user, settings.login_session_hours, actor)
    return LoginResponse(token=session.token, expires_at=session.expires_at, user=UserOut(**vars(user)))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End this login session")
async def logout(user: CurrentUser, pool: Pool, ip: ClientIp) -> Response:
    await end_session(pool, user, Actor(f"user:{user.email}", ip))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", summary="The logged-in user and the projects they belong to")
async def me(user: CurrentUser, pool: Pool) -> Me:
    found = await user_by_email(pool, user.email)
    projects = await projects_of_user(pool, user.id, limit=10_000)
    return Me(**vars(found), projects=projects)


@router.post("/accept-invite", responses=errors({**_LOGIN, 404: "unknown invite token", 409: "already a member",
                                 403: "logged in as someone else",
                                 410: "invite expired, revoked or already used"}),
             summary="Join a project with an invite token (creating the account if needed)")
async def accept(body: AcceptInviteRequest, pool: Pool, settings: AppSettings, ip: ClientIp,
                 logged_in: MaybeUser) -> AcceptedInvite:
    """Proves the invitee is the account holder by their login token or their password;
    an email with no account yet gets one with the password sent."""
    email = await invited_email(pool, body.token)
    actor = Actor(f"user:{email}", ip)
    existing = await user_by_email(pool, email)
    if logged_in is not None and logged_in.email != email:
        raise Forbidden(f"this invite is for {email}; you are logged in as {logged_in.email}")
    if existing is not None and logged_in is None:
        if not body.password:
            raise BadRequest(f"{email} already has an account: send its password (or its login token)")
        # The same checks and lockout as a login: an invite token does not replace the password.
        existing = await _authenticate(pool, settings, email, body.password, actor)
    project, role, user = await accept_invite(pool, body.token, existing, body.password, actor)
    session = await open_session(pool, user, settings.login_session_hours, actor)
    return AcceptedInvite(token=session.token, expires_at=session.expires_at, user=UserOut(**vars(user)),
                          project=ProjectOut(**vars(project)), role=role)
