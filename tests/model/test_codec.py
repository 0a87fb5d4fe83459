from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pydantic
import pytest

from sagaline import PayloadDecodeError, PayloadEncodeError, PayloadTooLargeError
from sagaline.model.codec import Codec, Signature


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
