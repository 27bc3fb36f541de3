"""Analysis types: Song's ``/schemas`` (register, list, get) and the payload checks they drive.

Song (SONG ``AnalysisTypeService.java``) keeps every registration of a name as a new version (1 for the
first, +1 for each re-registration), validates a new schema against its registration meta-schema, and
validates each submitted payload against the type's schema rendered into its base payload schema
(``renderPayloadJsonSchema``: the type's ``properties`` and ``required`` merged into ``analysisBase.json``).

The embedded registry adds one rule Song does not have, so that existing embedded deployments keep
working: until the first analysis type is registered, any ``analysisType`` name is accepted as before
(``is_enforcing`` is false); from then on, types are enforced exactly as Song enforces them.

The functions here run inside the caller's transaction (``Registry._read``/``_write``), on either
database (``dialect``); the table is created by migration 1.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from score.server.metadata.dialect import Db
from score.server.metadata.json_schema import SchemaError, validation_errors
from score.server.metadata.song_errors import (
    ANALYSIS_TYPE_NOT_FOUND,
    ILLEGAL_ANALYSIS_TYPE_NAME,
    MALFORMED_JSON_SCHEMA,
    MALFORMED_PARAMETER,
    SCHEMA_VIOLATION,
    RegistryError,
)
from score.server.metadata.song_schemas import ANALYSIS_BASE, ANALYSIS_UPDATE_BASE, REGISTRATION_META_SCHEMA

# AnalysisTypeService.ANALYSIS_TYPE_NAME_REGEX; "registration" is the path of GET /schemas/registration.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9\._-]+$")
REGISTRATION = "registration"
DEFAULT_LIMIT, DEFAULT_OFFSET = 20, 0  # AnalysisTypePageableResolver
SORT_VARIABLES = ("version", "name")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def check_name(name: Any) -> str:
    """``validateAnalysisTypeName``: Song's name regex, and not the reserved ``registration``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(
            MALFORMED_PARAMETER,
            f"The analysisTypeId name '{name}' does not match the regex: {NAME_PATTERN.pattern}",
        )
    if name == REGISTRATION:
        raise RegistryError(ILLEGAL_ANALYSIS_TYPE_NAME, f"Cannot register an analysisType with name '{REGISTRATION}'")
    return name


def render(schema: Mapping[str, Any], base: Mapping[str, Any] = ANALYSIS_BASE) -> dict[str, Any]:
    """``renderPayloadJsonSchema``: the type's properties and required fields merged into Song's base."""
    rendered = copy.deepcopy(dict(base))
    if isinstance(schema.get("required"), list):
        rendered["required"] = [*rendered.get("required", []), *schema["required"]]
    if isinstance(schema.get("properties"), Mapping):
        rendered.setdefault("properties", {}).update(copy.deepcopy(dict(schema["properties"])))
    return rendered


def is_enforcing(db: Db) -> bool:
    """True once any analysis type is registered (see the module docstring)."""
    return db.execute("SELECT 1 FROM analysis_type LIMIT 1").fetchone() is not None


def latest_version(db: Db, name: str) -> int:
    """``getLatestVersionNumber``: ANALYSIS_TYPE_NOT_FOUND when the name was never registered."""
    check_name(name)
    row = db.execute("SELECT MAX(version) FROM analysis_type WHERE name = ?", (name,)).fetchone()
    if row[0] is None:
        raise RegistryError(ANALYSIS_TYPE_NOT_FOUND, f"The analysisType with name '{name}' was not found")
    return int(row[0])


def _row(db: Db, name: str, version: int | None) -> Any:
    """``getAnalysisSchema(name, version)``: the latest when ``version`` is None."""
    if version is None:
        version = latest_version(db, name)
    check_name(name)
    if version < 1:
        raise RegistryError(MALFORMED_PARAMETER, f"The version '{version}' must be greater than 0")
    row = db.execute("SELECT * FROM analysis_type WHERE name = ? AND version = ?", (name, version)).fetchone()
    if row is None:
        latest = latest_version(db, name)  # not found at all: "The analysisType with name ... was not found"
        raise RegistryError(
            ANALYSIS_TYPE_NOT_FOUND,
            f"Version '{version}' of analysisType with name '{name}' does not exist however exists for the "
            f"latest version '{latest}'",
        )
    return row


def _wire(row: Any, *, schema: Any, options: Any) -> dict[str, Any]:
    """Song's ``AnalysisType`` JSON; ``schema`` is left out when hidden (``@JsonInclude(NON_NULL)``)."""
    out: dict[str, Any] = {
        "name": row["name"],
        "version": row["version"],
        "createdAt": row["created_at"],
        "options": options,
    }
    if schema is not None:
        out["schema"] = schema
    return out


def _schema_view(row: Any, unrendered_only: bool, hide: bool = False) -> Any:
    if hide:
        return None
    schema = json.loads(row["schema"])
    return schema if unrendered_only else render(schema)


def _file_types(row: Any) -> list[str]:
    return json.loads(row["file_types"]) if row["file_types"] else []


def get(db: Db, name: str, version: int | None, unrendered_only: bool) -> dict[str, Any]:
    """GET /schemas/{name}[?version=N]: ``options`` is null here, as Song's first ``getAnalysisType``."""
    row = _row(db, name, version)
    return _wire(row, schema=_schema_view(row, unrendered_only), options=None)


def register(db: Db, name: Any, schema: Any, options: Any) -> dict[str, Any]:
    """POST /schemas: a new version of ``name`` (``register`` + ``commitAnalysisType``)."""
    check_name(name)
    if schema is None:
        raise RegistryError(SCHEMA_VIOLATION, "Schema field cannot be null")
    problems = validation_errors(REGISTRATION_META_SCHEMA, schema)
    if not problems and not isinstance(schema, Mapping):  # the meta-schema lets `true` through; Song cannot
        problems = ["#: expected type: JSONObject, found: " + type(schema).__name__]  # render it either
    if problems:
        raise RegistryError(SCHEMA_VIOLATION, ",".join(problems))
    try:
        validation_errors(schema, {})  # compiles every $ref and pattern reachable from an empty payload
        validation_errors(render(schema), {})
    except SchemaError as exc:
        raise RegistryError(MALFORMED_JSON_SCHEMA, str(exc)) from None
    file_types: list[str] = []
    if options is not None:
        given = options.get("fileTypes") if isinstance(options, Mapping) else None
        if not isinstance(options, Mapping) or (given is not None and not _string_list(given)):
            raise RegistryError(MALFORMED_PARAMETER, 'options must be {"fileTypes": ["<fileType>", ...]}')
        file_types = list(options.get("fileTypes") or [])
    if not file_types:  # Song keeps the previous version's file types when none are given
        previous = db.execute(
            "SELECT file_types FROM analysis_type WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
        ).fetchone()
        file_types = json.loads(previous[0]) if previous is not None and previous[0] else []
    row = db.execute("SELECT MAX(version) FROM analysis_type WHERE name = ?", (name,)).fetchone()
    version = (row[0] or 0) + 1
    db.execute(
        "INSERT INTO analysis_type (name, version, schema, file_types, created_at) VALUES (?, ?, ?, ?, ?)",
        (name, version, json.dumps(schema, separators=(",", ":")), json.dumps(file_types), _now()),
    )
    stored = _row(db, name, version)
    return _wire(stored, schema=render(schema), options=options)


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def list_page(
    db: Db,
    *,
    names: Collection[str] | None,
    versions: Collection[int] | None,
    hide_schema: bool,
    unrendered_only: bool,
    limit: int,
    offset: int,
    sort: list[str],
    descending: bool,
) -> dict[str, Any]:
    """GET /schemas: Song's ``PageDTO`` (``limit``, ``offset``, ``count``, ``resultSet``)."""
    if versions and any(v < 1 for v in versions):
        raise RegistryError(MALFORMED_PARAMETER, "The requested versions must be greater than 0")
    where, args = [], []
    if names:
        where.append(f"name IN ({','.join('?' * len(names))})")
        args.extend(names)
    if versions:
        where.append(f"version IN ({','.join('?' * len(versions))})")
        args.extend(versions)
    clause = " AND ".join(where) or "1 = 1"
    direction = "DESC" if descending else "ASC"
    # Sort columns come from SORT_VARIABLES only ("version" sorts by id, as Song's resolver does).
    order = ", ".join(f"{'id' if s == 'version' else 'name'} {direction}" for s in sort)
    count = db.execute(f"SELECT COUNT(*) FROM analysis_type WHERE {clause}", args).fetchone()[0]  # noqa: S608
    rows = db.execute(
        f"SELECT * FROM analysis_type WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",  # noqa: S608
        [*args, limit, offset],
    ).fetchall()
    result = [
        _wire(r, schema=_schema_view(r, unrendered_only, hide_schema), options={"fileTypes": _file_types(r)})
        for r in rows
    ]
    return {"limit": limit, "offset": offset, "count": count, "resultSet": result}


def resolve_for_submit(db: Db, analysis_type: Mapping[str, Any], payload: Any) -> dict[str, Any]:
    """Validate a payload as Song's ``ValidationService.validate`` does; returns ``{name, version}``.

    Unknown name or version: ANALYSIS_TYPE_NOT_FOUND (404); no version: the latest; a file type outside
    the type's ``options.fileTypes``, or any schema violation: SCHEMA_VIOLATION.
    """
    name = analysis_type["name"]
    row = _row(db, name, analysis_type.get("version"))
    file_types = _file_types(row)
    files = payload.get("files") if isinstance(payload, Mapping) else None
    if file_types and isinstance(files, list):
        for f in files:
            if isinstance(f, Mapping) and f.get("fileType") not in file_types:
                raise RegistryError(
                    SCHEMA_VIOLATION,
                    f"{f.get('fileName')} name is not supported, supported formats are {', '.join(file_types)}",
                )
    _validate(render(json.loads(row["schema"])), payload)
    return {"name": row["name"], "version": row["version"]}


def validate_update(db: Db, request: Mapping[str, Any]) -> dict[str, Any]:
    """``validateUpdateRequest``: the request against the type's schema rendered into analysisUpdate.json."""
    raw = request.get("analysisType")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise RegistryError(MALFORMED_PARAMETER, "The updateAnalysisRequest does not contain the field 'analysisType'")
    version = raw.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise RegistryError(MALFORMED_PARAMETER, "analysisType.version must be an integer when present")
    row = _row(db, raw["name"], version)
    _validate(render(json.loads(row["schema"]), ANALYSIS_UPDATE_BASE), request)
    return {"name": row["name"], "version": row["version"]}


def _validate(schema: Mapping[str, Any], instance: Any) -> None:
    try:
        problems = validation_errors(schema, instance)
    except SchemaError as exc:
        raise RegistryError(MALFORMED_JSON_SCHEMA, str(exc)) from None
    if problems:
        raise RegistryError(SCHEMA_VIOLATION, ",".join(problems))


def validate_update_open(request: Mapping[str, Any]) -> dict[str, Any]:
    """An update while no type is registered: Song's update base schema alone (no ids, state, samples or
    files in the request); the analysisType is kept as given, as a submit keeps it."""
    _validate(ANALYSIS_UPDATE_BASE, request)
    raw = request["analysisType"]
    version = raw.get("version")
    return {"name": raw["name"]} if version is None else {"name": raw["name"], "version": version}
