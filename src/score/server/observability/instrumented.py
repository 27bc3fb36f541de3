"""Times and counts every call the services make to the object store and the metadata source.

A transparent proxy rather than a line in each backend: the four stores, the registry and the Song client
are measured the same way without one of them knowing, and the optional abilities a service looks for
(``isinstance(store, SignsWholePuts)``: the protocols are checked by attribute) are seen through it as they
are. Listings are generators, so they are timed until they are exhausted, not just created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import wraps
from types import GeneratorType
from typing import Any

from score.server.observability.metrics import BACKEND_CALLS, BACKEND_SECONDS


def _timed_iteration(items: Iterator[Any], backend: str, operation: str, started: float) -> Iterator[Any]:
    outcome = "ok"
    try:
        yield from items
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        BACKEND_CALLS.labels(backend, operation, outcome).inc()
        BACKEND_SECONDS.labels(backend, operation).observe(time.perf_counter() - started)


class Instrumented:
    """``target`` with each public method timed under ``score_backend_call_duration_seconds`` and counted
    under ``score_backend_calls_total`` (labels: ``backend``, the method's name, and ``ok`` or the class name
    of the exception it raised)."""

    def __init__(self, target: Any, backend: str) -> None:
        self.__dict__["_target"] = target
        self.__dict__["_backend"] = backend

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        wrapped = self._timed(value, name)
        self.__dict__[name] = wrapped  # looked up once: later calls skip __getattr__
        return wrapped

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"Instrumented({self._target!r})"

    def _timed(self, method: Callable[..., Any], operation: str) -> Callable[..., Any]:
        backend = self._backend

        @wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            except BaseException as exc:
                BACKEND_CALLS.labels(backend, operation, type(exc).__name__).inc()
                BACKEND_SECONDS.labels(backend, operation).observe(time.perf_counter() - started)
                raise
            if isinstance(result, GeneratorType):
                return _timed_iteration(result, backend, operation, started)
            BACKEND_CALLS.labels(backend, operation, "ok").inc()
            BACKEND_SECONDS.labels(backend, operation).observe(time.perf_counter() - started)
            return result

        return call
