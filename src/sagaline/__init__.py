"""sagaline: durable sagas for Python.

Workflows drive steps; each step may have a compensation that undoes it. Runs are recorded
in a database (SQLite embedded, PostgreSQL to scale out) so a crash at any line resumes by
replaying recorded results, and a failure runs the compensations in reverse.
"""

from sagaline.engine.durable import (
    ChildHandle,
    now,
    patched,
    sleep,
    start_child,
    uuid4,
    wait_for_signal,
)
from sagaline.engine.engine import Engine, RunHandle
from sagaline.engine.registry import StepDef, WorkflowDef, step, workflow
from sagaline.model.errors import (
    InvalidOperationError,
    NonDeterminismError,
    NonRetryable,
    PayloadDecodeError,
    PayloadEncodeError,
    PayloadError,
    PayloadTooLargeError,
    RunFailedError,
    RunNotFoundError,
    SagalineError,
    SignalTimeoutError,
    StepFailedError,
)
from sagaline.model.retry import RetryPolicy
from sagaline.model.status import RunStatus

__all__ = [
    "ChildHandle",
    "Engine",
    "InvalidOperationError",
    "NonDeterminismError",
    "NonRetryable",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "PayloadError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunStatus",
    "SagalineError",
    "SignalTimeoutError",
    "StepDef",
    "StepFailedError",
    "WorkflowDef",
    "now",
    "patched",
    "sleep",
    "start_child",
    "step",
    "uuid4",
    "wait_for_signal",
    "workflow",
]
