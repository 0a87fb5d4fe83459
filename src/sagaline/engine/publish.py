"""``sagaline.publish``: an event through the outbox, in the same commit as the run's work.

Where it is called decides which commit carries it:
- in a step (or a compensation): the step's own end, and only if the step succeeds, so an
  attempt that failed publishes nothing;
- in a workflow or a handler's body: a durable call, recorded (so replay does not publish
  it again) and written with the run's next checkpoint — before anything the workflow does
  next can be seen by another service.
Message ids derive from the run and the call's place, so a publish that is executed again
after a crash has the id it had: the broker or the consumers' inbox drops the duplicate.
"""

from __future__ import annotations

from typing import Any

from sagaline.engine import steps
from sagaline.engine.context import RunContext, current_context
from sagaline.engine.observe import outgoing_traceparent
from sagaline.model import envelope
from sagaline.model.errors import SagalineError
from sagaline.model.names import check_name
from sagaline.model.records import OutboxMessage
from sagaline.model.status import StepKind, StepStatus
from sagaline.model.topics import check_topic


async def publish(
    topic: str, payload: Any, *, correlation_id: str | None = None, key: str | None = None
) -> str:
    """Publish ``payload`` (JSON-encodable: a dataclass, a Struct, a dict...) to ``topic``.

    Inside a handler, the event's correlation id is the triggering event's and its
    causation is that event; in a workflow, the correlation id defaults to the run id.
    ``key`` travels as a header for consumers that partition by it. Returns the message id.

    Raises:
        SagalineError: called outside a workflow, handler or step (use ``engine.publish``).
        PayloadError: ``payload`` cannot be encoded (nothing is published).
    """
    check_topic(topic)
    if correlation_id is not None:
        check_name("correlation id", correlation_id)
    if key is not None:
        check_name("publish key", key)
    ctx = current_context()
    if ctx is None:
        raise SagalineError(
            "sagaline.publish() was called outside a workflow, handler or step; outside a "
            "run, publish with `await engine.publish(topic, payload)`"
        )
    running = steps.current_step()
    if running is not None:
        running.published += 1
        message_id = f"{running.key}:publish:{running.published}"
        message = build(ctx, topic, payload, message_id, correlation_id, key, running.step)
        running.outbox.append(message)
        return message_id
    call = ctx.begin(StepKind.PUBLISH, topic)
    if call.recorded is not None:
        recorded: str = ctx.rt.codec.decode_json(
            call.recorded.output or b'""', str, "published message id"
        )
        return recorded
    message_id = f"{ctx.run.run_id}:publish:{call.key}"
    message = build(ctx, topic, payload, message_id, correlation_id, key, None)
    output = ctx.rt.codec.encode_json(message_id, "published message id")
    row = ctx.row(call, StepKind.PUBLISH, topic, StepStatus.SUCCEEDED, output=output)
    ctx.publish_later(call, row, message)
    return message_id


def build(
    ctx: RunContext,
    topic: str,
    payload: Any,
    message_id: str,
    correlation_id: str | None,
    key: str | None,
    step: str | None,
) -> OutboxMessage:
    body = ctx.rt.codec.encode(payload, f"event {topic!r}")
    trigger = ctx.trigger()
    at = ctx.rt.clock()
    headers = envelope.headers(
        correlation_id=correlation_id
        or (trigger.correlation_id if trigger is not None else ctx.run.run_id),
        causation_id=trigger.id if trigger is not None else None,
        source=ctx.service(),
        at=at,
        traceparent=outgoing_traceparent(
            ctx.rt.observer, trigger.traceparent if trigger is not None else None
        ),
    )
    if key is not None:
        headers[envelope.KEY] = key
    return OutboxMessage(message_id, topic, body, headers, at, ctx.run.run_id)
