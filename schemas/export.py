"""Writes the JSON Schema of Span v1 for producers in other languages: `python -m schemas.export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.span import SCHEMA_VERSION, Span

SCHEMA_FILE = Path(__file__).with_name(f"span-v{SCHEMA_VERSION}.schema.json")


def span_json_schema() -> dict[str, Any]:
    schema = Span.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://spanstream.dev/schemas/span-v{SCHEMA_VERSION}.schema.json"
    schema["title"] = f"Spanstream Span v{SCHEMA_VERSION}"
    # Optional only for HTTP ingestion, where the API key supplies it; required on the topic.
    schema["required"] = sorted({*schema.get("required", []), "project_id"})
    return schema


def render() -> str:
    return json.dumps(span_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render())
    print(f"wrote {SCHEMA_FILE}")
