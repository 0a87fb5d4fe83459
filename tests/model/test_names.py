"""Run ids and signal, queue, workflow and step names: one rule, checked at the call."""

from __future__ import annotations

import pytest

from sagaline.model.errors import InvalidNameError, SagalineError
from sagaline.model.names import MAX_NAME_LENGTH, check_name


@pytest.mark.parametrize(
    "value",
    ["order-123", "a", "x" * MAX_NAME_LENGTH, "commande-é-😀", "with space", "a.b:c/d"],
)
def test_valid_names_are_returned_unchanged(value: str) -> None:
    assert check_name("run id", value) is value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "it is empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "it is 256 characters long"),
        ("a\x00b", r"the control character '\\x00' \(U\+0000\) at index 1"),
        ("line\n", r"the control character '\\n' \(U\+000A\) at index 4"),
        ("\ttab", r"the control character '\\t' \(U\+0009\) at index 0"),
        ("del\x7f", r"control character '\\x7f' \(U\+007F\)"),
        ("c1\x85", r"control character '\\x85' \(U\+0085\)"),
        ("\ud800", r"the lone surrogate '\\ud800' \(U\+D800\) at index 0"),
        ("ok\udfff", r"the lone surrogate '\\udfff' \(U\+DFFF\) at index 2"),
        (42, "it is int, not str"),
        (None, "it is NoneType, not str"),
        (b"bytes", "it is bytes, not str"),
    ],
)
def test_invalid_names_say_which_argument_what_is_wrong_and_what_is_allowed(
    value: object, reason: str
) -> None:
    with pytest.raises(InvalidNameError, match=reason) as info:
        check_name("signal name", value)
    message = str(info.value)
    assert message.startswith("signal name ")
    assert "use a str of 1 to 255 characters with no control characters" in message
    assert info.value.what == "signal name"
    assert info.value.value == value
    assert info.value.code == "invalid_name"
    assert isinstance(info.value, SagalineError)


def test_the_bad_value_is_shown_with_repr_so_hidden_characters_are_visible() -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name("run id", "a\x00b")
    assert str(info.value).startswith("run id 'a\\x00b' is not valid: ")


def test_a_long_value_is_shown_shortened() -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name("run id", "x" * 10_000)
    assert len(str(info.value)) < 300
    assert "10000 characters long" in str(info.value)
