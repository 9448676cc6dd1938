"""`spanstream replay` while `spanstream serve` holds the embedded store: the server replays.

Only one process may open a chdb directory, so the command asks the serving process (at
SPANSTREAM_API_HOST/PORT, with the operator token) to run the replay, and prints its progress
as it comes. The live views keep serving until the replay swaps the rebuilt ones in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import httpx

from spanstream.operator import operator_token
from spanstream.settings import Settings


class RemoteReplayError(RuntimeError):
    """The serving process could not be asked, or its replay failed; the message says which."""


def replay_through_server(settings: Settings, reprice: bool = False, since: datetime | None = None,
                          report: Callable[[str], None] = print, poll_seconds: float = 1.0) -> None:
    token = operator_token(settings, create=False)
    if token is None:
        raise RemoteReplayError(
            f"no operator token: set SPANSTREAM_OPERATOR_TOKEN as the server has it, or run this where "
            f"{settings.data_dir / 'operator-token'} is readable")
    base = f"http://{settings.api_host}:{settings.api_port}"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        try:
            answer = client.post("/api/admin/replay", json={"reprice": reprice,
                                                            "since": since.isoformat() if since else None})
        except httpx.HTTPError as error:
            raise RemoteReplayError(f"the serving process does not answer at {base} ({error})") from error
        if answer.status_code != 202:
            raise RemoteReplayError(f"the server refused the replay ({answer.status_code}): {_detail(answer)}")
        job = answer.json()
        report(f"replay {job['id']}: running in the serving process at {base}")
        shown = 0
        while True:
            for line in job["lines"]:
                report(line)
            shown = job["next_line"]
            if job["state"] != "running":
                break
            time.sleep(poll_seconds)
            try:
                job = client.get(f"/api/admin/replay/{job['id']}", params={"after": shown}).raise_for_status().json()
            except httpx.HTTPError as error:
                raise RemoteReplayError(f"lost the serving process while replay {job['id']} ran ({error})") from error
    if job["state"] == "failed":
        raise RemoteReplayError(f"replay {job['id']} failed: {job['error']}")


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail"))
    except ValueError:
        return answer.text[:500]
