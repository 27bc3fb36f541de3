"""JSON Schema (draft-07) validation of analysis payloads and registered schemas, as Song does (Everit).

jsonschema-rs does the work (a maintained validator with a linear-time regex engine, so a pattern an
analysis type brings cannot stall the server); this module only fixes the draft, refuses ``$ref`` to
anything outside the schema (nothing is fetched), and words each violation as ``#/path: what is wrong``.
``SchemaError`` is raised for a schema it cannot use (a bad ``$ref`` or regex), which Song reports as
MALFORMED_JSON_SCHEMA.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs

MAX_ERRORS = 20  # enough to fix a payload, few enough for one readable message


class SchemaError(ValueError):
    """The schema itself is unusable (bad $ref, bad regex, wrong keyword value type)."""


def _no_remote(uri: str) -> Any:
    raise ValueError(f"only local $ref ('#/...') are supported, not {uri!r}")


def _draft7(schema: Any) -> Any:
    """Draft-04's boolean ``exclusiveMinimum``/``exclusiveMaximum`` (Song's own schemas use them, and Everit
    reads them) as draft-07's numbers: ``minimum: 0, exclusiveMinimum: true`` is ``exclusiveMinimum: 0``."""
    if isinstance(schema, list):
        return [_draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _draft7(value) for key, value in schema.items()}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    return out


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema_rs.Draft7Validator:
    try:
        schema = _draft7(json.loads(schema_json))
        return jsonschema_rs.Draft7Validator(schema, validate_formats=False, retriever=_no_remote)
    except (ValueError, jsonschema_rs.ValidationError) as exc:
        raise SchemaError(f"the schema cannot be used: {str(exc).splitlines()[0]}") from None


def validation_errors(schema: Any, instance: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema`` (empty when valid, at most ``MAX_ERRORS``); raises
    ``SchemaError`` for a schema that cannot be used."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    found: list[str] = []
    try:
        for error in validator.iter_errors(instance):
            path = "".join(f"/{str(step).replace('~', '~0').replace('/', '~1')}" for step in error.instance_path)
            found.append(f"#{path}: {error.message}")
            if len(found) >= MAX_ERRORS:
                break
    except ValueError as exc:  # a $ref that resolves nowhere surfaces when it is reached
        raise SchemaError(f"the schema cannot be used: {str(exc).splitlines()[0]}") from None
    return found
