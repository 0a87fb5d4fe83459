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
from sagaline.engine.event_waits import wait_for_event
from sagaline.engine.handlers import on
from sagaline.engine.locks import acquire, lock, release
from sagaline.engine.publish import publish
from sagaline.engine.registry import StepDef, WorkflowDef, step, workflow
from sagaline.engine.steps import StepInfo, step_info
from sagaline.engine.tracker import Choreography, Tracker
from sagaline.engine.transaction import Transaction
from sagaline.model.choreography import Expectation, SagaNotFoundError, SagaStatus, SagaView
from sagaline.model.codec import Chain, PayloadCodec
from sagaline.model.crypto import AesGcm, PayloadCodecError, PayloadKeyError, PayloadTamperedError
from sagaline.model.envelope import Event
from sagaline.model.errors import (
    BusError,
    BusUnavailableError,
    DeadlockError,
    EventTimeoutError,
    InvalidNameError,
    InvalidOperationError,
    LockTimeoutError,
    NonDeterminismError,
    NonRetryable,
    PayloadDecodeError,
    PayloadEncodeError,
    PayloadError,
    PayloadNotFiniteError,
    PayloadTooLargeError,
    RunConflictError,
    RunFailedError,
    RunNotFoundError,
    SagalineError,
    SignalTimeoutError,
    StepFailedError,
)
from sagaline.model.locks import LockInfo, LockRequest
from sagaline.model.retry import RetryPolicy
from sagaline.model.status import RunStatus

__all__ = [
    "AesGcm",
    "BusError",
    "BusUnavailableError",
    "Chain",
    "ChildHandle",
    "Choreography",
    "DeadlockError",
    "Engine",
    "Event",
    "EventTimeoutError",
    "Expectation",
    "InvalidNameError",
    "InvalidOperationError",
    "LockInfo",
    "LockRequest",
    "LockTimeoutError",
    "NonDeterminismError",
    "NonRetryable",
    "PayloadCodec",
    "PayloadCodecError",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "PayloadError",
    "PayloadKeyError",
    "PayloadNotFiniteError",
    "PayloadTamperedError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "RunConflictError",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunStatus",
    "SagaNotFoundError",
    "SagaStatus",
    "SagaView",
    "SagalineError",
    "SignalTimeoutError",
    "StepDef",
    "StepFailedError",
    "StepInfo",
    "Tracker",
    "Transaction",
    "WorkflowDef",
    "acquire",
    "lock",
    "now",
    "on",
    "patched",
    "publish",
    "release",
    "sleep",
    "start_child",
    "step",
    "step_info",
    "uuid4",
    "wait_for_event",
    "wait_for_signal",
    "workflow",
]
