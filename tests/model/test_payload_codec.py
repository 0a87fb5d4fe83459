"""The payload codec stage: AES-GCM frames, key rotation, a user's own codec, ``describe``."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import pytest

from sagaline import (
    AesGcm,
    Chain,
    PayloadCodec,
    PayloadCodecError,
    PayloadDecodeError,
    PayloadError,
    PayloadKeyError,
    PayloadTamperedError,
    PayloadTooLargeError,
    SagalineError,
)
from sagaline.codecs import from_env
from sagaline.http.views import payload as view_payload
from sagaline.model.codec import Codec, Signature, describe
from sagaline.model.crypto import MAGIC, parse_frame

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
SECRET = "4111-1111-1111-1111"


@dataclass
class Card:
    number: str
    holder: str


class Zlib:
    """A user's codec: compresses, and marks what it wrote so plain JSON still decodes."""

    PREFIX = b"zl1:"

    def encode(self, data: bytes) -> bytes:
        return self.PREFIX + zlib.compress(data)

    def decode(self, data: bytes) -> bytes:
        if not data.startswith(self.PREFIX):
            return data
        return zlib.decompress(data[len(self.PREFIX) :])


def test_aes_gcm_round_trips_and_hides_the_plaintext() -> None:
    codec = Codec(payload_codec=AesGcm({"k1": K1}))
    stored = codec.encode(Card(SECRET, "Ada"), "step 'pay' result")
    assert stored.startswith(MAGIC) and SECRET.encode() not in stored
    assert codec.decode(stored, Card, "step 'pay' result") == Card(SECRET, "Ada")


def test_each_payload_gets_a_fresh_nonce() -> None:
    codec = AesGcm({"k1": K1})
    first, second = codec.encode(b'"same"'), codec.encode(b'"same"')
    assert first != second
    frame_1, frame_2 = parse_frame(first), parse_frame(second)
    assert frame_1 is not None and frame_2 is not None and frame_1.nonce != frame_2.nonce


def test_arguments_round_trip_through_the_codec_as_one_protected_payload() -> None:
    def fn(card: Card, amount: int, *, note: str) -> None: ...

    sig = Signature(fn, "step 'fn'")
    codec = Codec(payload_codec=AesGcm({"k1": K1}))
    stored = sig.encode_args(codec, sig.bind((Card(SECRET, "Ada"), 30), {"note": "n"}))
    assert SECRET.encode() not in stored
    assert sig.decode_args(codec, stored) == [Card(SECRET, "Ada"), 30, "n"]


def test_a_payload_written_before_encryption_still_decodes() -> None:
    plain = Codec().encode(Card(SECRET, "Ada"), "here")
    assert Codec(payload_codec=AesGcm({"k1": K1})).decode(plain, Card, "here") == Card(
        SECRET, "Ada"
    )


def test_rotation_reads_old_keys_and_writes_with_the_current_one() -> None:
    old = Codec(payload_codec=AesGcm({"k1": K1})).encode("old", "here")
    rotated = Codec(payload_codec=AesGcm({"k1": K1, "k2": K2}, current="k2"))
    new = rotated.encode("new", "here")
    assert describe(old) == "encrypted with key 'k1'"
    assert describe(new) == "encrypted with key 'k2'"
    assert rotated.decode(old, str, "here") == "old"
    assert rotated.decode(new, str, "here") == "new"


def test_an_unknown_key_names_the_key_id_and_what_to_do_never_the_key() -> None:
    stored = Codec(payload_codec=AesGcm({"k1": K1})).encode(SECRET, "here")
    with pytest.raises(PayloadKeyError) as info:
        Codec(payload_codec=AesGcm({"k2": K2})).decode(stored, str, "step 'pay' result")
    message = str(info.value)
    assert info.value.key_id == "k1" and info.value.where == "step 'pay' result"
    assert "'k1'" in message and "'k2'" in message and "runs retry" in message
    assert isinstance(info.value, PayloadDecodeError)  # so the engine parks the run
    _assert_no_key_material(message)


def test_an_engine_without_keys_reports_an_encrypted_payload_as_such() -> None:
    stored = Codec(payload_codec=AesGcm({"k1": K1})).encode(SECRET, "here")
    with pytest.raises(PayloadKeyError, match=r"'k1'.*no payload keys.*SAGALINE_KEYS"):
        Codec().decode(stored, str, "run 'r' result")


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce", "key id"])
def test_a_tampered_frame_fails_authentication(where: str) -> None:
    codec = AesGcm({"k1": K1, "k2": K2}, current="k1")
    stored = bytearray(codec.encode(b'{"card": "' + SECRET.encode() + b'"}'))
    frame = parse_frame(bytes(stored))
    assert frame is not None
    nonce_at = len(frame.header)
    if where == "ciphertext":
        stored[nonce_at + 12] ^= 1
    elif where == "tag":
        stored[-1] ^= 1
    elif where == "nonce":
        stored[nonce_at] ^= 1
    else:  # claim another known key: the header is authenticated too
        stored[nonce_at - 1 : nonce_at] = b"2"
    with pytest.raises(PayloadTamperedError) as info:
        Codec(payload_codec=codec).decode(bytes(stored), dict, "step 'pay' result")
    assert "does not authenticate" in str(info.value) and "step 'pay' result" in str(info.value)
    _assert_no_key_material(str(info.value))


def test_other_key_bytes_under_the_same_id_fail_authentication() -> None:
    stored = AesGcm({"k1": K1}).encode(b'"x"')
    with pytest.raises(PayloadTamperedError, match=r"'k1'.*not the one it was written with"):
        AesGcm({"k1": K2}).decode(stored)


def test_a_truncated_frame_is_reported_as_damaged() -> None:
    stored = AesGcm({"k1": K1}).encode(b'"x"')
    codec = Codec(payload_codec=AesGcm({"k1": K1}))
    with pytest.raises(PayloadTamperedError, match="damaged"):
        codec.decode(stored[:20], str, "here")
    assert describe(stored[:20]) == "encrypted, but its frame is damaged"


def test_a_users_codec_runs_through_the_hook_and_reads_older_plain_payloads() -> None:
    codec = Codec(payload_codec=Zlib())
    stored = codec.encode({"note": SECRET * 20}, "here")
    assert stored.startswith(Zlib.PREFIX) and len(stored) < len(SECRET) * 20
    assert codec.decode(stored, dict, "here") == {"note": SECRET * 20}
    assert codec.decode(b'{"a": 1}', dict, "here") == {"a": 1}
    assert isinstance(Zlib(), PayloadCodec)


def test_a_chain_applies_codecs_in_order_and_undoes_them_in_reverse() -> None:
    chain = Chain(Zlib(), AesGcm({"k1": K1}))
    stored = chain.encode(b'"' + SECRET.encode() * 10 + b'"')
    assert describe(stored) == "encrypted with key 'k1'"  # encryption is the outer layer
    assert AesGcm({"k1": K1}).decode(stored).startswith(Zlib.PREFIX)
    assert chain.decode(stored) == b'"' + SECRET.encode() * 10 + b'"'


def test_a_failing_user_codec_is_a_clear_payload_error() -> None:
    codec = Codec(payload_codec=Zlib())
    with pytest.raises(PayloadCodecError, match="the code changed or the stored data is damaged"):
        codec.decode(Zlib.PREFIX + b"not zlib", dict, "step 'x' result")

    class Refuses:
        def encode(self, data: bytes) -> bytes:
            raise RuntimeError("KMS unreachable")

        def decode(self, data: bytes) -> bytes:
            return data

    with pytest.raises(PayloadError, match=r"step 'x' result: .*Refuses.*KMS unreachable"):
        Codec(payload_codec=Refuses()).encode("v", "step 'x' result")


def test_the_size_limit_applies_to_the_json_before_protection() -> None:
    codec = Codec(max_payload_bytes=10, payload_codec=AesGcm({"k1": K1}))
    assert codec.decode(codec.encode("12345678", "here"), str, "here") == "12345678"
    with pytest.raises(PayloadTooLargeError):
        codec.encode("123456789", "here")


def test_decode_errors_blame_the_code_or_damaged_data() -> None:
    with pytest.raises(PayloadDecodeError, match="the code changed or the stored data is damaged"):
        Codec().decode(b'{"number": 1}', Card, "step 'x' result")


def test_views_show_an_encrypted_payload_as_such() -> None:
    stored = Codec(payload_codec=AesGcm({"k1": K1})).encode(SECRET, "here")
    assert view_payload(stored, values=True) == "<encrypted with key 'k1'>"
    assert view_payload(stored, values=False) == "<encrypted with key 'k1'>"
    assert view_payload(b'{"a": 1}', values=True) == {"a": 1}
    assert describe(b'{"a": 1}') is None and describe(None) is None


def test_keys_come_from_the_environment() -> None:
    env = {
        "SAGALINE_KEYS": f"k1:{base64.b64encode(K1).decode()}, k2:{base64.b64encode(K2).decode()}"
    }
    codec = from_env(env)
    assert codec is not None and codec.current == "k2"  # the last one listed writes
    assert codec.key_ids == ("k1", "k2")
    chosen = from_env({**env, "SAGALINE_KEY_CURRENT": "k1"})
    assert chosen is not None and describe(chosen.encode(b"1")) == "encrypted with key 'k1'"
    assert from_env({}) is None and from_env({"SAGALINE_KEYS": " "}) is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("k1", "entry 1 is not 'id:base64key'"),
        ("k1:not base64!", "key of 'k1' \\(entry 1\\) is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "'k1' is 5 bytes"),
        (f"bad id:{base64.b64encode(K1).decode()}", "key id 'bad id' is not valid"),
    ],
)
def test_malformed_keys_in_the_environment_are_refused_without_showing_them(
    value: str, match: str
) -> None:
    with pytest.raises(SagalineError, match=match) as info:
        from_env({"SAGALINE_KEYS": value})
    key_text = value.partition(":")[2]
    assert not key_text or key_text not in str(info.value)
    _assert_no_key_material(str(info.value))


def test_key_configuration_mistakes_are_refused() -> None:
    with pytest.raises(SagalineError, match="say which one writes"):
        AesGcm({"k1": K1, "k2": K2})
    with pytest.raises(SagalineError, match="current key 'k3' is not among"):
        AesGcm({"k1": K1}, current="k3")
    with pytest.raises(SagalineError, match="at least one key"):
        AesGcm({})
    with pytest.raises(SagalineError, match="current key 'k2' is not among"):
        from_env(
            {"SAGALINE_KEYS": f"k1:{base64.b64encode(K1).decode()}", "SAGALINE_KEY_CURRENT": "k2"}
        )


def test_repr_shows_key_ids_only() -> None:
    text = repr(AesGcm({"k1": K1, "k2": K2}, current="k2"))
    assert text == "AesGcm(keys=['k1', 'k2'], current='k2')"
    _assert_no_key_material(text)


def _assert_no_key_material(text: str) -> None:
    for key in (K1, K2):
        assert key.hex() not in text and base64.b64encode(key).decode() not in text
        assert repr(key) not in text
