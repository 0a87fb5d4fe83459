from __future__ import annotations

import sagaline

REQUIRED = {
    "Engine",
    "step",
    "workflow",
    "RetryPolicy",
    "NonRetryable",
    "RunStatus",
    "RunFailedError",
    "NonDeterminismError",
    "SagalineError",
}


def test_all_is_sorted_complete_and_importable() -> None:
    assert sagaline.__all__ == sorted(sagaline.__all__)
    assert set(sagaline.__all__) >= REQUIRED
    for name in sagaline.__all__:
        assert hasattr(sagaline, name), name


def test_run_statuses_are_those_of_the_design() -> None:
    names = {s.value for s in sagaline.RunStatus}
    assert names >= {
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "COMPENSATING",
        "COMPENSATED",
        "FAILED",
        "COMPENSATION_FAILED",
        "FAILED_AFTER_PIVOT",
        "SUSPENDED",
        "CANCELLED",
    }


def test_every_error_is_a_sagaline_error_with_a_code() -> None:
    from sagaline.model import errors

    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.SagalineError):
            assert value.code, value
    assert not issubclass(sagaline.NonRetryable, sagaline.SagalineError)
