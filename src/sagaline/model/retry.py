"""Retry policies and their arithmetic, kept pure so they are tested without waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

from sagaline.model.errors import NonRetryable


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a step (or a compensation) is tried.

    Attempt ``n`` (1-based) that fails is followed, if ``n < max_attempts``, by a wait of
    ``min(initial * backoff ** (n - 1), max_interval)`` seconds, shortened at random by up to
    ``jitter`` of itself so that many runs failing together do not retry in lockstep.

    Exceptions that subclass :class:`~sagaline.NonRetryable`, or any class listed in
    ``non_retryable``, fail the step at once.
    """

    max_attempts: int = 3
    initial: float = 0.5
    backoff: float = 2.0
    max_interval: float = 10.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be at least 1")
        if self.initial < 0 or self.max_interval < 0:
            problems.append("initial and max_interval must not be negative")
        if self.backoff < 1:
            problems.append("backoff must be at least 1.0")
        if not 0 <= self.jitter <= 1:
            problems.append("jitter must be between 0 and 1")
        if problems:
            from sagaline.model.errors import DefinitionError

            raise DefinitionError(f"invalid RetryPolicy: {'; '.join(problems)}")

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, NonRetryable):
            return False
        return not isinstance(exc, self.non_retryable)

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """Whether failed attempt number ``attempt`` (1-based) is followed by another."""
        return attempt < self.max_attempts and self.is_retryable(exc)

    def delay(self, attempt: int, rand: float = 0.0) -> float:
        """Seconds to wait after failed attempt ``attempt``; ``rand`` in [0, 1) drives jitter."""
        base = min(self.initial * self.backoff ** (attempt - 1), self.max_interval)
        return base * (1.0 - self.jitter * rand)


DEFAULT_STEP_RETRY = RetryPolicy()
"""Steps: 3 attempts, waiting 0.5 s then 1 s."""

DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    max_attempts=8, initial=0.5, backoff=2.0, max_interval=30.0
)
"""Compensations: 8 attempts over about a minute (0.5, 1, 2, 4, 8, 16, 30 s), then the run
parks in COMPENSATION_FAILED for an operator."""
