"""Payloads as JSON through msgspec, decoded back to the annotated types.

Everything a run stores (inputs, step results, compensation arguments) passes through
here, on the first run and on replay alike, so a workflow sees the same value both times.
Pickle is never used: stored bytes may come from anywhere the database is reachable from.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

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
        from sagaline.model.errors import PayloadNotFiniteError

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


class Codec:
    """``encode(value) -> bytes`` and ``decode(bytes, type) -> value``.

    ``max_payload_bytes`` is checked at encode time, before anything is written, and so
    are NaN and infinity: msgspec writes them as ``null``, which would not decode back.
    """

    def __init__(self, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._packer = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    def encode(self, value: Any, where: str) -> bytes:
        from sagaline.model.errors import PayloadEncodeError, PayloadTooLargeError

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

    def decode(self, data: bytes, type_: Any, where: str) -> Any:
        from sagaline.model.errors import PayloadDecodeError

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
            from sagaline.model.errors import DefinitionError

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
                from sagaline.model.errors import DefinitionError

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
        from sagaline.model.errors import DefinitionError

        if not kwargs and len(args) == len(self.params) and self._all_positional:
            return list(args)  # the common call, without inspect's general binding
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(f"{self.owner}: bad arguments: {exc}") from exc
        bound.apply_defaults()
        return [bound.arguments[p.name] for p in self.params]

    def encode_args(self, codec: Codec, values: list[Any]) -> bytes:
        from sagaline.model.errors import PayloadEncodeError

        try:
            return codec.encode(values, f"{self.owner} arguments")
        except PayloadEncodeError:
            for param, value in zip(self.params, values, strict=True):
                codec.encode(value, f"{self.owner} argument {param.name!r}")
            raise

    def decode_args(self, codec: Codec, data: bytes) -> list[Any]:
        raws: list[msgspec.Raw] = codec.decode(data, self._args_type, f"{self.owner} arguments")
        if len(raws) != len(self.params):
            from sagaline.model.errors import PayloadDecodeError

            raise PayloadDecodeError(
                f"{self.owner} arguments",
                "list",
                f"{len(raws)} values stored, {len(self.params)} parameters now",
            )
        return [
            codec.decode(bytes(raw), t, f"{self.owner} argument {p.name!r}")
            for raw, t, p in zip(raws, self.param_types, self.params, strict=True)
        ]

    def call_parts(self, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments that call the function with ``values``."""
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

    from sagaline.model.errors import DefinitionError

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
