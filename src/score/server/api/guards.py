"""Per-object checks shared by the upload and download routers: id, registration, policy, audit."""

from __future__ import annotations

import threading

from fastapi import Request

from score.core.ids import is_safe_id
from score.server.api.deps import audited_principal, enforce, get_context
from score.server.auth.policy import Action, decide
from score.server.auth.principal import Principal
from score.server.errors import BadRequest, NotFound, Unavailable
from score.server.metadata.base import UNPUBLISHED, DecisionMemo, Entity, MetadataUnavailable, decision_scope

_MEMO_LOCK = threading.Lock()


def valid_object_id(object_id: str) -> str:
    if not is_safe_id(object_id):
        raise BadRequest(f"invalid object id {object_id!r}: expected a UUID such as 3f2a...-...")
    return object_id


def request_memo(request: Request) -> DecisionMemo:
    """This request's shared metadata answers: access and state are asked afresh once per request, not per
    check, and a batch's objects (checked on several threads, one Request) share their analysis' answer."""
    with _MEMO_LOCK:
        memo = getattr(request.state, "metadata_memo", None)
        if memo is None:
            memo = request.state.metadata_memo = DecisionMemo()
        return memo


def registered_entity(request: Request, object_id: str) -> Entity:
    try:
        with decision_scope(request_memo(request)):
            entity = get_context(request).metadata.entity(object_id)
    except MetadataUnavailable as exc:
        raise Unavailable(f"the metadata server is unavailable ({exc}); try again shortly") from exc
    if entity is None:
        raise NotFound(
            f"object {object_id} is not registered in the metadata server; submit its analysis to Song first"
        )
    return entity


def analysis_state(request: Request, entity: Entity) -> str:
    try:
        with decision_scope(request_memo(request)):
            state = get_context(request).metadata.analysis_state(entity.projectCode, entity.gnosId)
    except MetadataUnavailable as exc:
        raise Unavailable(f"the metadata server is unavailable ({exc}); try again shortly") from exc
    if state is None:
        raise NotFound(f"analysis {entity.gnosId} of study {entity.projectCode} was not found in the metadata server")
    return state


def authorize_object(
    request: Request, action: Action, object_id: str, audit: bool = False, byte_range: str | None = None
) -> tuple[Principal, Entity]:
    """Verify the caller, look the object up and apply the policy; audit when URLs may be issued."""
    context = get_context(request)
    valid_object_id(object_id)
    principal = audited_principal(request, action.value, object_id, byte_range)
    if action is Action.UPLOAD and principal.anonymous:
        decision = decide(action, principal, context.settings.scopes.to_policy())
        context.audit.record(request, principal, action.value, object_id, False, decision.reason, None, byte_range)
        enforce(decision)
    entity = registered_entity(request, object_id)
    decision = decide(action, principal, context.settings.scopes.to_policy(), entity.projectCode, entity.access)
    if audit or not decision.allowed:
        context.audit.record(
            request,
            principal,
            action.value,
            object_id,
            decision.allowed,
            decision.reason,
            entity.projectCode,
            byte_range,
        )
    enforce(decision)
    return principal, entity


def require_state(request: Request, entity: Entity, wanted: str) -> None:
    """Score's analysis-state gates: upload only while UNPUBLISHED, download only once PUBLISHED."""
    state = analysis_state(request, entity)
    if state == wanted:
        return
    if wanted == UNPUBLISHED:
        rule = "files can only be uploaded while the analysis is UNPUBLISHED; unpublish it first"
    else:
        rule = (
            "files can only be downloaded once the analysis is PUBLISHED "
            "(Song's publish check may use exclude-urls=true)"
        )
    raise BadRequest(f"analysis {entity.gnosId} of object {entity.id} is {state}: {rule}")
