from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagaline import NonRetryable, RetryPolicy, SagalineError
from sagaline.model.retry import DEFAULT_COMPENSATION_RETRY


class Declined(NonRetryable):
    pass


def test_backoff_grows_exponentially_then_caps() -> None:
    policy = RetryPolicy(max_attempts=10, initial=0.5, backoff=2.0, max_interval=3.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@given(attempt=st.integers(1, 50), rand=st.floats(0, 0.999))
def test_jitter_only_shortens_and_never_exceeds_the_cap(attempt: int, rand: float) -> None:
    policy = RetryPolicy(max_attempts=60, initial=0.1, backoff=3.0, max_interval=7.0, jitter=0.5)
    delay = policy.delay(attempt, rand)
    assert 0 <= delay <= min(0.1 * 3.0 ** (attempt - 1), 7.0)
    assert delay >= 0.5 * min(0.1 * 3.0 ** (attempt - 1), 7.0)


def test_non_retryable_errors_are_never_retried() -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=(KeyError,))
    assert not policy.should_retry(1, Declined("no"))
    assert not policy.should_retry(1, KeyError("k"))
    assert policy.should_retry(1, ValueError("v"))
    assert not policy.should_retry(5, ValueError("v"))


def test_default_compensation_policy_is_bounded() -> None:
    policy = DEFAULT_COMPENSATION_RETRY
    waits = [policy.delay(n) for n in range(1, policy.max_attempts)]
    assert policy.max_attempts == 8
    assert max(waits) == policy.max_interval == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff": 0.5}, {"jitter": 2.0}, {"initial": -1.0}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(SagalineError, match="invalid RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
