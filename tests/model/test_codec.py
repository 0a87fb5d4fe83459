from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgspec
import pydantic
import pytest

from sagaline import PayloadDecodeError, PayloadEncodeError, PayloadTooLargeError
from sagaline.model.codec import Codec, Signature
from sagaline.model.errors import PayloadNotFiniteError


@dataclass
class Item:
    sku: str
    qty: int


class Money(msgspec.Struct):
    cents: int
    currency: str


class Customer(pydantic.BaseModel):
    name: str
    vip: bool = False


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (Item("a", 2), Item),
        (Money(100, "EUR"), Money),
        (Customer(name="Ada"), Customer),
        ({"a": [1, 2, {"b": None}]}, dict),
        ([Item("x", 1)], list[Item]),
        ("text", str),
        (None, type(None)),
    ],
)
def test_values_round_trip_to_their_type(value: object, type_: object) -> None:
    codec = Codec()
    assert codec.decode(codec.encode(value, "here"), type_, "here") == value


def test_unencodable_value_names_where_and_type() -> None:
    with pytest.raises(PayloadEncodeError, match=r"step 'x'.*'object'"):
        Codec().encode(object(), "step 'x'")


def test_oversized_payload_fails_at_encode() -> None:
    with pytest.raises(PayloadTooLargeError, match="over the limit of 10"):
        Codec(max_payload_bytes=10).encode("x" * 100, "step 'x'")


def test_mismatched_json_fails_decode_with_type_name() -> None:
    codec = Codec()
    with pytest.raises(PayloadDecodeError, match="'Item'"):
        codec.decode(b'{"sku": 1}', Item, "step 'x' result")


def test_signature_decodes_each_argument_to_its_annotation() -> None:
    def fn(item: Item, money: Money, *, who: Customer) -> None: ...

    sig = Signature(fn, "step 'fn'")
    codec = Codec()
    values = sig.bind((Item("a", 1), Money(5, "USD")), {"who": Customer(name="B")})
    decoded = sig.decode_args(codec, sig.encode_args(codec, values))
    args, kwargs = sig.call_parts(decoded)
    assert args == [Item("a", 1), Money(5, "USD")]
    assert kwargs == {"who": Customer(name="B")}


@dataclass
class Priced:
    sku: str
    prices: list[float]


class Quote(msgspec.Struct):
    items: list[Priced]
    note: str | None = None


class Reading(pydantic.BaseModel):
    celsius: float


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (NAN, "the value is nan"),
        (INF, "the value is inf"),
        (-INF, "the value is -inf"),
        ([1.0, None, NAN], r"the value at \[2\] is nan"),
        ({"total": INF}, "the value at total is inf"),
        ({"a b": {"c": [-INF]}}, r"the value at \['a b'\].c\[0\] is -inf"),
        ((1, (2.0, NAN)), r"the value at \[1\]\[1\] is nan"),
        (Priced("a", [1.0, INF]), r"the value at prices\[1\] is inf"),
        (Quote([Priced("a", [1.0]), Priced("b", [NAN])]), r"items\[1\].prices\[0\] is nan"),
        (Reading(celsius=NAN), "the value at celsius is nan"),
        ([Reading(celsius=1.0), Reading(celsius=-INF)], r"\[1\].celsius is -inf"),
    ],
)
def test_nan_and_infinity_are_refused_at_encode_naming_where(value: object, where: str) -> None:
    with pytest.raises(PayloadNotFiniteError, match=where) as info:
        Codec().encode(value, "step 'x' result")
    message = str(info.value)
    assert message.startswith("step 'x' result: ")
    assert "JSON has no NaN or infinity; pass such a value as a string" in message
    assert isinstance(info.value, PayloadEncodeError)
    assert info.value.code == "payload_not_finite"


@pytest.mark.parametrize(
    "value",
    [
        [1.0, None, 1e308, -1e308, 5e-324],
        {"note": None, "text": "null nan inf"},
        Quote([Priced("a", [0.0, -0.0])]),
        b"\xcb\x7f\xf8 looks like a packed NaN",
        "\xcb\x7f\xf0 in text, next to a null",
    ],
)
def test_finite_values_with_nulls_still_encode(value: object) -> None:
    codec = Codec()
    data = codec.encode([value, None], "here")
    pair: Any = tuple[type(value), None]  # type: ignore[misc]
    assert codec.decode(data, pair, "here") == (value, None)


def test_nan_in_an_argument_names_the_argument() -> None:
    def fn(sku: str, price: float) -> None: ...

    sig = Signature(fn, "step 'pay'")
    with pytest.raises(PayloadNotFiniteError, match=r"^step 'pay' argument 'price': the value"):
        sig.encode_args(Codec(), ["a", NAN])


@dataclasses.dataclass
class Holder:
    value: object


def test_an_annotation_no_payload_decodes_to_is_refused_when_decorated() -> None:
    from sagaline.model.codec import Signature
    from sagaline.model.errors import DefinitionError

    async def takes_object(x: object) -> None: ...

    async def returns_nested(x: int) -> list[Holder]:
        return []

    with pytest.raises(DefinitionError, match=r"x is annotated with object.*typing\.Any"):
        Signature(takes_object, "step 'takes_object'")
    with pytest.raises(DefinitionError, match="its return type is annotated with object"):
        Signature(returns_nested, "step 'returns_nested'")
