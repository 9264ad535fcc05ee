"""JSON Schema files for upstream teams, one per event type of contract v1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from schemas.events import INPUT_MODELS, OUTPUT_MODELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(event_type: str) -> dict[str, Any]:
    model = {**INPUT_MODELS, **OUTPUT_MODELS}[event_type]
    mode: Literal["validation", "serialization"] = (
        "validation" if event_type in INPUT_MODELS else "serialization"
    )
    schema = model.model_json_schema(mode=mode)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:volmatch:events:v1:{event_type}",
        **schema,
    }


def export_schemas(out_dir: Path) -> list[Path]:
    """Write ``<type>.schema.json`` for every input and output event type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in sorted({*INPUT_MODELS, *OUTPUT_MODELS}):
        path = out_dir / f"{event_type}.schema.json"
        text = json.dumps(schema_for(event_type), ensure_ascii=False, indent=2, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
