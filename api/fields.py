"""Field types shared by request models."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; refused here rather than failing in the database.
    if "\x00" in text:
        raise ValueError("text may not contain NUL characters")
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
