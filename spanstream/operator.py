"""The operator token: what lets a `spanstream` command on this machine ask the running server
to do operator work (a replay) on the embedded store that only the server may open.

It is not a project API key: a replay rebuilds every project's views. `SPANSTREAM_OPERATOR_TOKEN`
sets it; otherwise the server writes a random one to `<data dir>/operator-token`, readable by
its own user only, where the command finds it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from spanstream.settings import Settings


def _token_file(settings: Settings) -> Path:
    return settings.data_dir / "operator-token"


def operator_token(settings: Settings, create: bool = True) -> str | None:
    """The configured token, else the one in the data dir, else (if `create`) a new one saved there."""
    if settings.operator_token:
        return settings.operator_token
    path = _token_file(settings)
    if path.exists():
        return path.read_text().strip() or None
    if not create:
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip() or None
    with os.fdopen(descriptor, "w") as out:
        out.write(token)
    return token
