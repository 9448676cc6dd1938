"""What `spanstream sql` and `spanstream sessions` use: the API over HTTP with a project key, and a
terminal table. They go through the API because the embedded store admits one process, the server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from spanstream.settings import Settings

_CELL_WIDTH = 60


class ApiError(RuntimeError):
    """The API could not be reached or refused the request; the message says which and why."""


def api_key(settings: Settings) -> str:
    """SPANSTREAM_API_KEY, else the key `spanstream dev` saved in the data dir."""
    if settings.api_key:
        return settings.api_key
    saved = settings.data_dir / "dev-api-key"
    if saved.exists() and saved.read_text().strip():
        return saved.read_text().strip()
    raise ApiError(f"no API key: set SPANSTREAM_API_KEY, or run `spanstream dev` (which saves one to {saved})")


def default_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def call_api(url: str, key: str, method: str, path: str, timeout: float = 60.0, **request: Any) -> Any:
    """The decoded JSON answer, or ApiError with the API's own explanation."""
    try:
        answer = httpx.request(method, url.rstrip("/") + path, headers={"X-API-Key": key}, timeout=timeout, **request)
    except httpx.HTTPError as error:
        raise ApiError(f"the API does not answer at {url} ({error}); start it with `spanstream serve` or pass --url") from error
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        if not isinstance(detail, str):
            detail = json.dumps(detail)
        raise ApiError(f"{answer.status_code}: {detail}")
    return answer.json()


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, dict)):
        text = ", ".join(_cell(v) for v in value) if isinstance(value, list) else json.dumps(value)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under a header, columns padded to their widest cell; numbers align right."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                                  for row in rows if row[i] is not None) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)
