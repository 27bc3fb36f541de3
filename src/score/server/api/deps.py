"""FastAPI dependencies shared by every router: the server context and the calling principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from score.server.auth.policy import Action, Decision, decide
from score.server.auth.principal import ANONYMOUS, InvalidToken, Principal, ProviderUnavailable, token_fingerprint
from score.server.context import ServerContext
from score.server.errors import ApiError, Unauthorized, Unavailable

P = ParamSpec("P")
T = TypeVar("T")


def get_context(request: Request) -> ServerContext:
    return request.app.state.context


async def run_blocking(request: Request, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``call`` on the event loop when every call it can make is in-process and brief (``ServerContext.in_process``,
    the embedded default), else on the thread pool as a plain ``def`` route would run. For routes whose work is
    a handful of reads; anything that can hash, copy or wait stays a ``def`` route."""
    if get_context(request).in_process:
        return call(*args, **kwargs)
    return await run_in_threadpool(call, *args, **kwargs)


def bearer_token(request: Request) -> str | None:
    """The bearer token, or None when no ``Authorization: Bearer`` header was sent."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None  # like Score: a non-Bearer header is treated as anonymous
    return value.strip()


def get_principal(request: Request) -> Principal:
    """Verify the caller's token. No token means anonymous; a bad token is refused with 401."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        principal = ANONYMOUS
    elif not token:
        raise Unauthorized("the Authorization header has an empty bearer token; pass a valid access token")
    else:
        try:
            principal = get_context(request).verifier.verify(token)
        except InvalidToken as exc:
            raise Unauthorized(str(exc)) from exc
        except ProviderUnavailable as exc:
            raise Unavailable(f"cannot check the access token: {exc}; try again shortly") from exc
    request.state.principal = principal
    return principal


def audited_principal(request: Request, action: str, target: str, byte_range: str | None = None) -> Principal:
    """``get_principal``, writing the audit line when the token itself is refused (a 401 decision)."""
    try:
        return get_principal(request)
    except Unauthorized as refusal:
        token = bearer_token(request)
        unverified = Principal(subject="unverified", token_id=token_fingerprint(token) if token else "")
        get_context(request).audit.record(
            request, unverified, action, target, False, refusal.message, byte_range=byte_range
        )
        raise


def enforce(decision: Decision) -> None:
    """Raise the API error a denial maps to (401/403/400) with the policy's reason as message."""
    if not decision.allowed:
        if decision.status == 401:
            raise Unauthorized(decision.reason)
        raise ApiError(decision.reason, status=decision.status)


def authorize(
    request: Request, action: Action, study_id: str | None = None, access: str | None = None, doing: str | None = None
) -> Principal:
    """Apply the policy to a request that issues no URLs; only refusals are audited (target: the path).
    ``doing``: the request in the user's words, for a refusal (see ``decide``)."""
    context = get_context(request)
    target = request.url.path
    principal = audited_principal(request, action.value, target)
    decision = decide(action, principal, context.settings.scopes.to_policy(), study_id, access, doing)
    if not decision.allowed:
        context.audit.record(request, principal, action.value, target, False, decision.reason, study_id)
    enforce(decision)
    return principal
