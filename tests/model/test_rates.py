"""The token bucket's arithmetic, without a database or a clock."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagaline.model.rates import (
    Bucket,
    QueueRate,
    check_rate,
    default_burst,
    describe,
    grant,
    parse_rate,
    refill,
    spend,
    tokens_after_change,
)


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = Bucket(per_second=20.0, burst=5, tokens=0.0, refilled_at=100.0)
    assert refill(bucket, 100.0) == 0.0
    assert refill(bucket, 100.1) == pytest.approx(2.0)
    assert refill(bucket, 100.25) == pytest.approx(5.0)
    assert refill(bucket, 200.0) == 5.0


def test_a_clock_that_steps_back_adds_and_removes_nothing() -> None:
    bucket = Bucket(per_second=20.0, burst=5, tokens=2.5, refilled_at=100.0)
    assert refill(bucket, 99.0) == 2.5
    granted = grant(bucket, 10, 99.0)
    assert granted.at == 100.0 and granted.allowed == 2


def test_a_claim_takes_whole_tokens_only_and_knows_when_the_next_comes() -> None:
    bucket = Bucket(per_second=20.0, burst=10, tokens=2.5, refilled_at=100.0)
    granted = grant(bucket, 10, 100.0)
    assert granted.allowed == 2 and granted.tokens == 2.5
    assert granted.retry_in == pytest.approx(0.5 / 20.0)
    assert spend(granted.tokens, 2) == pytest.approx(0.5)


def test_a_claim_wanting_less_than_the_bucket_holds_takes_what_it_wants() -> None:
    granted = grant(Bucket(20.0, 10, 7.0, 100.0), 3, 100.0)
    assert granted.allowed == 3
    assert granted.retry_after(3, 3) is None  # the rate did not stop it


def test_only_a_claim_the_rate_cut_short_is_told_to_look_again() -> None:
    granted = grant(Bucket(20.0, 1, 0.4, 100.0), 10, 100.0)
    assert granted.allowed == 0
    assert granted.retry_after(10, 0) == pytest.approx(0.6 / 20.0)
    full = grant(Bucket(20.0, 1, 1.0, 100.0), 10, 100.0)
    assert full.retry_after(10, 1) == pytest.approx(1 / 20.0)
    assert full.retry_after(10, 0) is None  # there was a token but nothing to run


@given(
    per_second=st.floats(0.01, 1000.0),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=60),
    wanted=st.integers(1, 100),
)
def test_no_span_grants_more_than_burst_plus_rate_times_its_length(
    per_second: float, burst: int, gaps: list[float], wanted: int
) -> None:
    bucket = Bucket(per_second, burst, float(burst), 0.0)
    now, total = 0.0, 0
    for gap in gaps:
        now += gap
        granted = grant(bucket, wanted, now)
        assert 0 <= granted.allowed <= wanted
        total += granted.allowed
        bucket = Bucket(per_second, burst, spend(granted.tokens, granted.allowed), granted.at)
        assert total <= burst + per_second * now + 1e-6


def test_a_new_rate_starts_full_and_a_changed_one_keeps_what_it_had() -> None:
    assert tokens_after_change(None, QueueRate(20.0, 3), 100.0) == 3.0
    old = Bucket(20.0, 10, 1.0, 100.0)
    assert tokens_after_change(old, QueueRate(5.0, 10), 100.1) == pytest.approx(3.0)
    assert tokens_after_change(old, QueueRate(5.0, 2), 200.0) == 2.0


def test_rates_are_parsed_per_second_minute_and_hour() -> None:
    assert parse_rate("20/s") == 20.0
    assert parse_rate("600/m") == 10.0
    assert parse_rate("90/h") == pytest.approx(0.025)
    assert parse_rate(" 2.5/S ") == 2.5
    assert parse_rate("none") is None


@pytest.mark.parametrize("text", ["20 per sec", "20", "/s", "20/d", "20/s/s", "twenty/s", ""])
def test_a_malformed_rate_is_refused_with_the_forms_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("e.g. 20/s, 600/m or 100/h")):
        parse_rate(text)


@pytest.mark.parametrize("text", ["0/s", "-1/s", "0.0/m"])
def test_a_rate_that_is_not_positive_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="more than zero"):
        parse_rate(text)


def test_the_default_burst_is_a_second_s_worth_and_at_least_one() -> None:
    assert [default_burst(r) for r in (20.0, 2.5, 0.01)] == [20, 3, 1]


def test_check_rate_names_what_is_wrong() -> None:
    assert check_rate(20.0, 1) is None
    assert "more than 0" in (check_rate(0.0, 1) or "")
    assert "more than 0" in (check_rate(math.inf, 1) or "")
    assert "more than 0" in (check_rate(math.nan, 1) or "")
    assert "more than 0" in (check_rate(2e6, 1) or "")
    assert "burst" in (check_rate(1.0, 0) or "")
    assert "burst" in (check_rate(1.0, 2**40) or "")


def test_rates_are_described_as_an_operator_writes_them() -> None:
    assert describe(QueueRate(20.0, 1)) == "20/s (burst 1)"
    assert describe(QueueRate(0.5, 1)) == "30/m (burst 1)"
    assert describe(QueueRate(1 / 3600, 1)) == "1/h (burst 1)"
