"""The pieces every part of the OpenAPI document is built from, in one place: the
document (``openapi``) and the routes that describe their own paths (``locks``,
``sagas``) use the same ones, so the document says one thing one way."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def ok(description: str, schema: str) -> Json:
    """A 200 answer: JSON of the named component schema."""
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def query(name: str, schema: Json, description: str) -> Json:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }
