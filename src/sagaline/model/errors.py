"""Every error sagaline raises, in one tree.

::

    SagalineError
    ├── DefinitionError            a workflow or step is declared wrongly (at import time)
    ├── UnknownWorkflowError       a run names a workflow this process has not imported
    ├── UnknownStepError           a recorded step has no definition in this process
    ├── StepOutsideWorkflowError   a step was awaited outside a running workflow
    ├── InvalidNameError           a run id, signal, queue, workflow or step name is malformed
    ├── PayloadError
    │   ├── PayloadEncodeError     a value cannot be stored as JSON
    │   │   └── PayloadNotFiniteError  a float in it is NaN or infinite
    │   ├── PayloadTooLargeError   an encoded value is over the configured limit
    │   └── PayloadDecodeError     stored JSON does not fit the annotated type
    ├── NonDeterminismError        the code no longer matches a run's recorded history
    ├── StepFailedError            a step gave up; raised into the workflow
    ├── SignalTimeoutError         a wait_for_signal timed out; raised into the workflow
    ├── RunFailedError             ``handle.result()`` of a run that did not complete
    ├── RunNotFoundError           no run has this id
    ├── InvalidOperationError      an operator action that the run's status forbids
    │   └── RunConflictError       a start reuses a run id with another workflow or input
    ├── DatabaseError
    │   ├── DatabaseNotFoundError      nothing at that URL, and the caller only reads
    │   ├── DatabaseUnavailableError   the connection dropped or the file is locked: retry
    │   │   └── DiskFullError          the disk (or the database's quota) is full: retry
    │   ├── DatabaseCorruptError       the file is damaged: restore a backup
    │   ├── UndecodableRowError        a row's stored text does not decode (damaged data)
    │   ├── NotASagalineDatabaseError
    │   └── SchemaTooNewError
    └── LeaseLostError             this worker no longer owns the run (internal)

User code raises :class:`NonRetryable` (not a ``SagalineError``) to stop retries.

Each class has a stable ``code`` for the HTTP API and the CLI, and carries its data as
attributes; messages say what happened and what to do about it.
"""

from __future__ import annotations

from typing import Any


class SagalineError(Exception):
    """Base of every error sagaline raises."""

    code = "sagaline_error"


class DefinitionError(SagalineError):
    code = "definition_error"


class UnknownWorkflowError(SagalineError):
    code = "unknown_workflow"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"workflow {name!r} is not registered in this process; import the module that "
            f"defines it (a worker runs only the workflows whose modules it imported)"
        )


class UnknownStepError(SagalineError):
    code = "unknown_step"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"step {name!r} is not registered in this process; import the module that defines it"
        )


class StepOutsideWorkflowError(SagalineError):
    code = "step_outside_workflow"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"step {name!r} was awaited outside a running workflow; start a workflow with "
            f"`engine.start(...)`, or call `{name.rsplit('.', 1)[-1]}.fn(...)` to run the plain "
            f"function (in a unit test, for instance)"
        )


class InvalidNameError(SagalineError):
    """A run id or a signal, queue, workflow or step name that sagaline does not accept.

    ``what`` names the argument (``"run id"``), ``value`` is what was given and ``reason``
    says what is wrong with it; see :func:`sagaline.model.names.check_name`.
    """

    code = "invalid_name"

    def __init__(self, what: str, value: object, reason: str) -> None:
        from sagaline.model.names import MAX_NAME_LENGTH, shown

        self.what = what
        self.value = value
        self.reason = reason
        super().__init__(
            f"{what} {shown(value)} is not valid: {reason}; use a str of 1 to "
            f"{MAX_NAME_LENGTH} characters with no control characters (such as NUL, newline "
            f"or tab) and no lone surrogates"
        )


class PayloadError(SagalineError):
    code = "payload_error"


class PayloadEncodeError(PayloadError):
    code = "payload_encode_error"

    def __init__(self, where: str, type_name: str, reason: str) -> None:
        self.where = where
        self.type_name = type_name
        super().__init__(
            f"{where}: a value of type {type_name!r} cannot be stored as JSON ({reason}); "
            f"use a dataclass, a msgspec.Struct, a pydantic model or plain JSON values"
        )


class PayloadNotFiniteError(PayloadEncodeError):
    code = "payload_not_finite"

    def __init__(self, where: str, path: str, value: float) -> None:
        self.where = where
        self.type_name = "float"
        self.path = path
        self.value = value
        PayloadError.__init__(
            self,
            f"{where}: {path} is {value!r}, and JSON has no NaN or infinity; pass such a "
            f"value as a string (e.g. 'nan', 'inf') or as None",
        )


class PayloadTooLargeError(PayloadError):
    code = "payload_too_large"

    def __init__(self, where: str, size: int, limit: int) -> None:
        self.where = where
        self.size = size
        self.limit = limit
        super().__init__(
            f"{where}: the encoded value is {size} bytes, over the limit of {limit}; store "
            f"large data elsewhere and pass a reference, or raise `max_payload_bytes`"
        )


class PayloadDecodeError(PayloadError):
    code = "payload_decode_error"

    def __init__(self, where: str, type_name: str, reason: str) -> None:
        self.where = where
        self.type_name = type_name
        super().__init__(
            f"{where}: the stored value does not decode as {type_name!r} ({reason}); the "
            f"code changed or the stored data is damaged: deploy the code the run was "
            f"recorded with, then `sagaline runs retry RUN_ID` (or check the database with "
            f"`sagaline db check`)"
        )


class NonDeterminismError(SagalineError):
    code = "non_determinism"

    def __init__(self, run_id: str, seq: int, expected: str, actual: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"run {run_id!r} is not deterministic at step #{seq}: the history recorded "
            f"{expected!r} but the code now calls {actual!r}; deploy the code the run started "
            f"with (or guard the change with a version patch), then `sagaline runs retry {run_id}`"
        )


class StepFailedError(SagalineError):
    """A step gave up after its retries; the workflow may catch it.

    The workflow sees this same error on its first run and on replay, so it carries the
    original exception's type name and message rather than the exception itself.
    """

    code = "step_failed"

    def __init__(
        self, step: str, error_type: str, error_message: str, attempts: int, seq: int
    ) -> None:
        self.step = step
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        self.seq = seq
        super().__init__(
            f"step {step!r} failed after {attempts} attempt(s): {error_type}: {error_message}"
        )


class SignalTimeoutError(SagalineError):
    """No signal arrived before the wait's timeout; the workflow may catch it."""

    code = "signal_timeout"

    def __init__(self, name: str, run_id: str) -> None:
        self.name = name
        self.run_id = run_id
        super().__init__(f"run {run_id!r} waited for signal {name!r} and timed out")


class EventTimeoutError(SagalineError):
    """No matching event arrived before ``wait_for_event``'s timeout; the workflow may
    catch it (or let it fail the run, which then compensates)."""

    code = "event_timeout"

    def __init__(self, topic: str, correlation_id: str, run_id: str) -> None:
        self.topic = topic
        self.correlation_id = correlation_id
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} waited for event {topic!r} of saga {correlation_id!r} and timed out"
        )


class LockTimeoutError(SagalineError):
    """A lock was not free before ``lock(..., timeout=)`` passed; unhandled, it fails the
    run, which compensates (and so releases what it held)."""

    code = "lock_timeout"

    def __init__(self, key: str, run_id: str) -> None:
        self.key = key
        self.run_id = run_id
        super().__init__(f"run {run_id!r} waited for lock {key!r} and timed out")


class DeadlockError(SagalineError):
    """This run's lock wait closed a cycle of runs waiting on each other, and it was the
    youngest of them: it gives up the wait (unhandled, its saga unwinds and releases what
    it holds) so that the others go on."""

    code = "deadlock"

    def __init__(self, key: str, run_id: str, cycle: list[str]) -> None:
        self.key = key
        self.run_id = run_id
        self.cycle = cycle
        ring = " -> ".join(repr(r) for r in [*cycle, cycle[0]]) if cycle else repr(run_id)
        super().__init__(
            f"run {run_id!r} gave up waiting for lock {key!r}: the runs {ring} were waiting "
            f"on each other, and it is the youngest of them"
        )


class RunFailedError(SagalineError):
    code = "run_failed"

    def __init__(self, run_id: str, status: Any, cause: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.status = status
        self.cause = cause or {}
        reason = self.cause.get("message", "no error recorded")
        super().__init__(
            f"run {run_id!r} ended {status.value}: {reason}; see `sagaline runs show {run_id}`"
        )


class RunNotFoundError(SagalineError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} not found; list runs with `sagaline runs list`")


class InvalidOperationError(SagalineError):
    code = "invalid_operation"


class RunConflictError(InvalidOperationError):
    """A start gave an existing run's id with another workflow or other arguments."""

    code = "run_conflict"

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(
            f"run {run_id!r} already exists {reason}; choose another run_id, or follow the "
            f"existing run with `engine.handle({run_id!r})`"
        )


class DatabaseError(SagalineError):
    code = "database_error"


class DatabaseNotFoundError(DatabaseError):
    """Nothing at that URL, and the caller only reads: nothing was created."""

    code = "database_not_found"


class DatabaseUnavailableError(DatabaseError):
    """A transient failure (dropped connection, restart, lock timeout): worth retrying."""

    code = "database_unavailable"


class DiskFullError(DatabaseUnavailableError):
    """The database could not write because its disk is full.

    A kind of :class:`DatabaseUnavailableError` because it passes: nothing was written,
    and the same write succeeds once space is freed, so workers retry it (often, and
    cheaply) rather than park anything.
    """

    code = "disk_full"

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(
            f"cannot write to the database {where}: the disk is full ({detail}); free space "
            f"on that disk (nothing was written; workers carry on once there is room)"
        )


class DatabaseCorruptError(DatabaseError):
    """The database file is damaged: SQLite found a malformed page, or no database at all.

    Not transient: the same read or write fails again until the file is repaired, so it is
    reported (and a run whose checkpoints it refuses is parked), never retried blindly.
    """

    code = "database_corrupt"

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(
            f"the database file {where} is damaged ({detail}); see what is wrong with "
            f"`sagaline db check --db sqlite:///{where}`, then restore it from a backup "
            f"(stop the workers first)"
        )


class UndecodableRowError(DatabaseError):
    """A row read back does not decode: a status no version wrote, JSON that does not parse.

    The database read it fine, so the page is sound; the data in it is not (damaged on
    disk, or written by something other than sagaline). Lists show such a row as
    undecodable and go on; loading that one row raises this.
    """

    code = "undecodable_row"

    def __init__(self, table: str, key: str, reason: str) -> None:
        self.table = table
        self.key = key
        self.reason = reason
        super().__init__(
            f"a row of table {table!r} ({key}) cannot be decoded: {reason}; the stored data "
            f"is damaged: look the database over with `sagaline db check`, and restore it "
            f"from a backup if that finds damage"
        )


class NotASagalineDatabaseError(DatabaseError):
    code = "not_a_sagaline_database"


class SchemaTooNewError(DatabaseError):
    code = "schema_too_new"

    def __init__(self, where: str, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"{where} has schema version {found}, newer than the {known} this sagaline "
            f"knows; upgrade sagaline (pip install -U sagaline) before opening it"
        )


class LeaseLostError(SagalineError):
    code = "lease_lost"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"this worker lost its lease on run {run_id!r}; another worker owns it")


class NonRetryable(Exception):
    """Raise a subclass of this from a step to fail it at once, without retries."""


class BusError(SagalineError):
    """The message bus refused or failed an operation, or its URL is wrong."""

    code = "bus_error"


class BusUnavailableError(BusError):
    """The broker is unreachable or dropped the connection: worth retrying later.

    A publish that raises this may still have reached the broker (the answer was lost);
    message ids make the retry harmless.
    """

    code = "bus_unavailable"
