"""``@sagaline.on``: event handlers, each a workflow started once per delivered message.

A handler is registered twice: as a workflow (so its runs get everything a workflow has:
steps, retries, compensations, timers, crash recovery) and here, with the topic it
listens to, its service and its failure event.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sagaline.engine.registry import WorkflowDef, default_name, workflow
from sagaline.model.envelope import Event
from sagaline.model.errors import DefinitionError
from sagaline.model.names import check_name
from sagaline.model.retry import RetryPolicy
from sagaline.model.topics import check_topic

F = TypeVar("F", bound=Callable[..., Awaitable[None]])
DEFAULT_SERVICE = "default"

_handlers: dict[str, HandlerDef] = {}


@dataclass(frozen=True)
class HandlerDef:
    topic: str
    name: str
    service: str | None
    """None: the service of the engine that runs it (``Engine(service=...)``)."""
    on_failure: str | None
    retry: RetryPolicy | None
    """The policy of the handler's steps that declare none of their own."""
    workflow: WorkflowDef[Any, Any]

    def service_in(self, engine_service: str | None) -> str:
        return self.service or engine_service or DEFAULT_SERVICE


def on(
    topic: str,
    *,
    service: str | None = None,
    on_failure: str | None = None,
    name: str | None = None,
    retry: RetryPolicy | None = None,
) -> Callable[[F], F]:
    """Handle every event published to ``topic``: ``async def h(event: Event[T]) -> None``.

    Each delivery starts a durable run, once per message however often the bus delivers
    it. ``on_failure="PaymentFailed"`` publishes that event (in the failing run's final
    commit) when the run fails, compensates or is cancelled, so the other services learn
    of it. ``retry`` is the retry policy of the steps the handler calls that have none.
    """
    check_topic(topic)
    if on_failure is not None:
        check_topic(on_failure)
    if service is not None:
        check_name("@on service", service)
    if name is not None:
        check_name("@on name", name)

    def register(fn: F) -> F:
        label = name or default_name(fn)
        _check_signature(fn, label)
        wdef: WorkflowDef[Any, Any] = workflow(name=label)(fn)
        _handlers[wdef.name] = HandlerDef(topic, wdef.name, service, on_failure, retry, wdef)
        return fn

    return register


def _check_signature(fn: Callable[..., Any], label: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise DefinitionError(f"handler {label!r} must be an `async def`: it awaits its steps")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 1:
        raise DefinitionError(
            f"handler {label!r} takes one parameter, the event "
            f"(`async def {fn.__name__}(event: sagaline.Event[MyData]) -> None`); "
            f"it takes {len(params)}"
        )
    hint = typing.get_type_hints(fn).get(params[0].name)
    if hint is not None and typing.get_origin(hint) is not Event and hint is not Event:
        raise DefinitionError(
            f"handler {label!r}: annotate its parameter as sagaline.Event[MyData], not {hint!r}"
        )


def get_handler(workflow_name: str) -> HandlerDef | None:
    return _handlers.get(workflow_name)


def handlers_of(service: str | None) -> list[HandlerDef]:
    """The handlers an engine of ``service`` runs (all of them when it names none)."""
    return [h for h in _handlers.values() if service is None or h.service in (None, service)]
