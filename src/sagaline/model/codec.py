"""Payloads as JSON through msgspec, decoded back to the annotated types, then protected.

Everything a run stores or sends (inputs, step results, compensation arguments, signals,
child inputs, outbox bodies, run outputs) passes through here, on the first run and on
replay alike, so a workflow sees the same value both times. Pickle is never used: stored
bytes may come from anywhere the database is reachable from.

Two stages, as in Temporal's converter/codec split: a value becomes JSON (``msgspec``),
then the JSON becomes the stored bytes through an optional :class:`PayloadCodec` (bytes
to bytes: encryption, compression, a KMS). The engine's own bookkeeping values (a timer's
due time, a child's run id, a published message's id) are not user data and stay plain
JSON (:meth:`Codec.encode_json`), so that the pure model and the operator views read them
without a key.

Errors (``{"type", "message"}`` of steps, runs and audit events) are not payloads and are
not protected: they are the operator's view of what went wrong, read by ``runs list``,
``runs show`` and the API without any key, and a run's history that cannot be read must
still say why it is parked. Keep secrets out of exception messages.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from sagaline.model import crypto
from sagaline.model.errors import (
    DefinitionError,
    PayloadDecodeError,
    PayloadEncodeError,
    PayloadError,
    PayloadNotFiniteError,
    PayloadTooLargeError,
)

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

# A msgpack float64 (0xcb, then big-endian) whose exponent bits are all ones: NaN or ±inf.
# It may also match inside a string or bytes, so a match is only a reason to look closer.
_PACKED_NON_FINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")


def _enc_hook(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic v2, without importing it
    if callable(dump):
        return dump(mode="json")
    raise NotImplementedError(f"unsupported type {type(value).__qualname__}")


def _dec_hook(type_: Any, obj: Any) -> Any:
    validate = getattr(type_, "model_validate", None)
    if callable(validate):
        return validate(obj)
    raise NotImplementedError(f"unsupported type {type_!r}")


def _check_finite(value: Any, where: str) -> None:
    try:
        plain = msgspec.to_builtins(value, enc_hook=_enc_hook)
    except Exception:
        return  # it did encode as JSON: do not refuse it over a stricter conversion
    found = _non_finite(plain)
    if found is not None:
        number, *path = found
        raise PayloadNotFiniteError(where, _path_text(reversed(path)), number)


def _non_finite(obj: Any) -> list[Any] | None:
    """``[the float, innermost key, ..., outermost key]`` of the first NaN or infinity."""
    kind = type(obj)
    if kind is float:
        return None if math.isfinite(obj) else [obj]
    if kind is list or kind is tuple:  # what to_builtins leaves: lists, tuples, dicts
        for index, item in enumerate(obj):
            found = _non_finite(item)
            if found is not None:
                found.append(index)
                return found
    elif kind is dict:
        for key, item in obj.items():
            found = _non_finite(item)
            if found is not None:
                found.append(key)
                return found
    return None


def _path_text(path: Any) -> str:
    parts = [
        f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]" for key in path
    ]
    return f"the value at {''.join(parts).lstrip('.')}" if parts else "the value"


def type_name(type_: Any) -> str:
    return getattr(type_, "__qualname__", None) or repr(type_)


@runtime_checkable
class PayloadCodec(Protocol):
    """Bytes to bytes after JSON encoding: encryption, compression, a KMS envelope.

    ``decode(encode(data)) == data``. ``decode`` must also accept bytes that ``encode``
    never made (plain JSON stored before the codec was configured) and return them
    unchanged, so turning a codec on never strands history. Raise a
    :class:`~sagaline.model.crypto.PayloadCodecError` from ``decode`` for data that is
    yours but cannot be undone; any other exception is wrapped in one. Both run on the
    event loop, once per payload: keep them fast, or cache what a remote service gives.
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


class Chain:
    """Several payload codecs in turn: ``Chain(compress, AesGcm(...))`` compresses, then
    encrypts; decoding undoes them in reverse order."""

    def __init__(self, *codecs: PayloadCodec) -> None:
        self.codecs = codecs

    def encode(self, data: bytes) -> bytes:
        for codec in self.codecs:
            data = codec.encode(data)
        return data

    def decode(self, data: bytes) -> bytes:
        for codec in reversed(self.codecs):
            data = codec.decode(data)
        return data

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.codecs))})"


def describe(data: bytes | None) -> str | None:
    """What a stored payload is, when it cannot be shown as JSON without a key.

    ``"encrypted with key 'k1'"`` for a frame written by
    :class:`~sagaline.model.crypto.AesGcm`; None for plain JSON (or nothing), which the
    caller shows itself. Never decrypts, so a view without keys can call it on anything.
    """
    if data is None or not crypto.is_framed(data):
        return None
    try:
        frame = crypto.parse_frame(data)
    except crypto.PayloadTamperedError:
        return "encrypted, but its frame is damaged"
    assert frame is not None
    return f"encrypted with key {frame.key_id!r}"


class Codec:
    """``encode(value) -> bytes`` and ``decode(bytes, type) -> value``.

    ``max_payload_bytes`` is checked at encode time, before anything is written, and so
    are NaN and infinity: msgspec writes them as ``null``, which would not decode back.
    The limit applies to the JSON, before the payload codec: whether a value fits does not
    depend on how it is protected.

    ``payload_codec`` turns the JSON into the stored bytes and back. Without one, a stored
    payload that is encrypted (written by an engine that has keys) raises a clear
    :class:`~sagaline.model.crypto.PayloadKeyError` instead of failing as bad JSON.
    """

    def __init__(
        self,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.payload_codec = payload_codec
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._packer = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    def encode(self, value: Any, where: str) -> bytes:
        """``value`` as the bytes to store or send: JSON, then the payload codec."""
        return self.protect(self.encode_json(value, where), where)

    def decode(self, data: bytes, type_: Any, where: str) -> Any:
        """Stored bytes back as ``type_``: the payload codec undone, then the JSON."""
        return self.decode_json(self.unprotect(data, where), type_, where)

    def encode_json(self, value: Any, where: str) -> bytes:
        """``value`` as plain JSON, unprotected: for the engine's own bookkeeping values."""
        try:
            data = self._encoder.encode(value)
        except (TypeError, NotImplementedError, OverflowError, ValueError) as exc:
            raise PayloadEncodeError(where, type(value).__qualname__, str(exc)) from exc
        if b"null" in data and self._maybe_non_finite(value):
            _check_finite(value, where)
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(where, len(data), self.max_payload_bytes)
        return data

    def _maybe_non_finite(self, value: Any) -> bool:
        """Cheap: msgpack keeps NaN and infinity, which JSON shows only as ``null``."""
        try:
            return _PACKED_NON_FINITE.search(self._packer.encode(value)) is not None
        except Exception:
            return True

    def protect(self, data: bytes, where: str) -> bytes:
        """JSON bytes through the payload codec (unchanged without one)."""
        codec = self.payload_codec
        if codec is None:
            return data
        try:
            return codec.encode(data)
        except Exception as exc:
            raise PayloadError(
                f"{where}: the payload codec {type(codec).__qualname__} could not encode the "
                f"value ({_reason(exc)}); nothing was written"
            ) from exc

    def unprotect(self, data: bytes, where: str) -> bytes:
        """Stored bytes back to JSON bytes: the payload codec undone.

        Raises:
            PayloadCodecError: the payload is encrypted with a key this process does not
                have (:class:`~sagaline.model.crypto.PayloadKeyError`), does not
                authenticate, or the codec failed on it.
        """
        codec = self.payload_codec
        if codec is None:
            if crypto.is_framed(data):
                frame = crypto.parse_frame(data)  # a damaged one raises with the reason
                assert frame is not None
                raise crypto.PayloadKeyError(frame.key_id, (), where)
            return data
        try:
            return codec.decode(data)
        except crypto.PayloadCodecError as exc:
            raise exc.located(where) from None
        except Exception as exc:
            raise crypto.PayloadCodecError(
                f"the payload codec {type(codec).__qualname__} could not decode the stored "
                f"value ({_reason(exc)}); the code changed or the stored data is damaged",
                where,
            ) from exc

    def decode_json(self, data: bytes, type_: Any, where: str) -> Any:
        """Plain JSON bytes (no payload codec applied) as ``type_``."""
        try:
            return self._decoder(type_).decode(data)
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            ValueError,
            TypeError,
            NotImplementedError,  # a type msgspec cannot decode to (``object``)
        ) as exc:
            raise PayloadDecodeError(where, type_name(type_), str(exc)) from exc

    def _decoder(self, type_: Any) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = msgspec.json.Decoder(type_, dec_hook=_dec_hook)
            self._decoders[type_] = decoder
        return decoder


def _reason(exc: Exception) -> str:
    text = f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__
    return text if len(text) <= 300 else text[:297] + "..."


class Signature:
    """A function's parameters and return type, as the codec needs them.

    Arguments are stored as one JSON array in parameter order, so that a compensation or a
    recovered workflow gets them back decoded to each parameter's annotated type.
    """

    def __init__(self, fn: Callable[..., Any], owner: str, skip_first: bool = False) -> None:
        self.owner = owner
        self._sig = inspect.signature(fn)
        if skip_first:  # a transactional step's transaction: given by the engine, not stored
            self._sig = self._sig.replace(parameters=list(self._sig.parameters.values())[1:])
        try:
            hints = _type_hints(fn)
        except Exception as exc:
            raise DefinitionError(
                f"{owner}: cannot resolve the type annotations ({exc}); make every annotation "
                f"importable at module level"
            ) from exc
        self.params: list[inspect.Parameter] = []
        self.param_types: list[Any] = []
        stored = {*self._sig.parameters, "return"}
        for name, hint in hints.items():
            if name in stored:
                _check_storable(hint, owner, "its return type" if name == "return" else name)
        for param in self._sig.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"{owner}: *args and **kwargs cannot be recorded; name every parameter"
                )
            self.params.append(param)
            self.param_types.append(hints.get(param.name, Any))
        self.return_type: Any = hints.get("return", Any)
        if self.return_type is None:
            self.return_type = type(None)
        self._args_type: Any = list[msgspec.Raw]
        self._all_positional = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in self.params
        )

    @property
    def arity(self) -> int:
        return len(self.params)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
        """The call's arguments in parameter order, defaults filled in."""
        if not kwargs and len(args) == len(self.params) and self._all_positional:
            return list(args)  # the common call, without inspect's general binding
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(f"{self.owner}: bad arguments: {exc}") from exc
        bound.apply_defaults()
        return [bound.arguments[p.name] for p in self.params]

    def encode_args(self, codec: Codec, values: list[Any]) -> bytes:
        try:
            return codec.encode(values, f"{self.owner} arguments")
        except PayloadEncodeError:
            for param, value in zip(self.params, values, strict=True):
                codec.encode_json(value, f"{self.owner} argument {param.name!r}")
            raise

    def decode_args(self, codec: Codec, data: bytes) -> list[Any]:
        raws: list[msgspec.Raw] = codec.decode(data, self._args_type, f"{self.owner} arguments")
        if len(raws) != len(self.params):
            raise PayloadDecodeError(
                f"{self.owner} arguments",
                "list",
                f"{len(raws)} values stored, {len(self.params)} parameters now",
            )
        return [
            codec.decode_json(bytes(raw), t, f"{self.owner} argument {p.name!r}")
            for raw, t, p in zip(raws, self.param_types, self.params, strict=True)
        ]

    def call_parts(self, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments that call the function with ``values``."""
        if self._all_positional:
            return values, {}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param, value in zip(self.params, values, strict=True):
            if param.kind is param.KEYWORD_ONLY:
                kwargs[param.name] = value
            else:
                args.append(value)
        return args, kwargs


def _check_storable(type_: Any, owner: str, what: str) -> None:
    """Refuse, when the function is decorated, a type no payload can be decoded to: it
    would otherwise fail every run (or ``result()`` after the run completed)."""
    import msgspec.inspect as mi

    if type_ is None or type_ is type(None):
        return
    try:
        info = mi.type_info(type_)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(
            f"{owner}: {what} is annotated {type_name(type_)}, which cannot be stored ({exc}); "
            f"use JSON-like types, dataclasses, msgspec Structs or pydantic models"
        ) from None
    seen: set[int] = set()
    todo: list[Any] = [info]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, mi.CustomType) and not callable(
            getattr(node.cls, "model_validate", None)
        ):
            shown = "object" if node.cls is object else type_name(node.cls)
            raise DefinitionError(
                f"{owner}: {what} is annotated with {shown}, which a stored value cannot be "
                f"decoded back to; use typing.Any for any JSON value, or a dataclass, msgspec "
                f"Struct or pydantic model"
            )
        # msgspec.inspect's nodes are Structs: walk every field that holds more of them.
        for field in getattr(type(node), "__struct_fields__", ()):
            value = getattr(node, field)
            if isinstance(value, mi.Type | mi.Field):
                todo.append(value)
            elif isinstance(value, tuple | list):
                todo.extend(v for v in value if isinstance(v, mi.Type | mi.Field))


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn)
