"""Checks of the expressions inside a definition: paths, intrinsic calls, payload
templates and JSONata, each problem reported where it is (a JSON pointer)."""

from __future__ import annotations

import re
from typing import Any

from sagaline.definitions.asl import intrinsics, jsonata_ql, paths
from sagaline.definitions.asl.errors import AslError


class ExpressionChecks:
    """The expression rules; ``add(where, message)`` records a problem."""

    def add(self, where: tuple[str | int, ...], message: str) -> None:
        raise NotImplementedError

    def path(
        self, value: Any, where: tuple[Any, ...], reference: bool = False, intrinsic: bool = False
    ) -> None:
        if not isinstance(value, str):
            self.add(where, "must be a JSONPath string")
            return
        if intrinsic and value.startswith("States."):
            self.intrinsic(value, where)
            return
        if reference:
            if paths.reference(value) is None or re.match(r"^\$[A-Za-z_]", value):
                self.add(where, f"{value!r} is not a reference path ($, $.a.b, $['k'][0])")
            return
        try:
            if not value.startswith("$"):
                raise paths.PathInvalid(value)
            if paths.reference(value) is None and "(@" not in value and not value.startswith("$$"):
                paths._compiled(re.sub(r"^\$[A-Za-z_]\w*", "$", value))
        except paths.PathInvalid:
            self.add(where, f"{value!r} is not a JSONPath")

    def intrinsic(self, value: str, where: tuple[Any, ...]) -> None:
        try:
            call = intrinsics._parse(value)
        except AslError:
            self.add(where, f"{value!r}: not a JSONPath or intrinsic function expression")
            return
        if not intrinsics.known(call.name):
            self.add(
                where,
                f"{value!r}: not a JSONPath or intrinsic function expression "
                f"({call.name} is no intrinsic function)",
            )
            return
        if call.name == "States.MathAdd" and any(isinstance(a, str) for a in call.args):
            self.add(where, "States.MathAdd takes numbers or paths")

    def template(self, value: Any, where: tuple[Any, ...], lang: str) -> None:
        if isinstance(value, dict):
            for key in value:
                if lang != "JSONata" and key.endswith(".$") and key[:-2] in value:
                    self.add((*where, key), f"fields {key[:-2]!r} and {key!r} clash")
            for key, sub in value.items():
                if lang != "JSONata" and key.endswith(".$"):
                    if not isinstance(sub, str):
                        self.add((*where, key), "a .$ field's value must be a string")
                    elif sub.startswith("States."):
                        self.intrinsic(sub, (*where, key))
                    else:
                        self.path(sub, (*where, key))
                else:
                    self.template(sub, (*where, key), lang)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                self.template(sub, (*where, i), lang)
        elif isinstance(value, str) and lang == "JSONata" and value.startswith("{%"):
            self.jsonata(value, where)
        elif isinstance(value, str) and lang == "JSONata" and value.endswith("%}"):
            self.add(where, "a JSONata expression starts with '{%'")

    def jsonata(self, value: Any, where: tuple[Any, ...]) -> None:
        if not isinstance(value, str) or not jsonata_ql.is_expression(value):
            self.add(where, "a JSONata expression is written {% expression %}")
            return
        inner = value[2:-2]
        edges = inner[: len(inner) - len(inner.lstrip())] + inner[len(inner.rstrip()) :]
        if not inner.startswith(" ") or not inner.endswith(" ") or "\n" in edges:
            self.add(where, "a JSONata expression is written '{% ' expression ' %}'")
            return
        try:
            jsonata_ql._compiled(inner.strip())
        except jsonata_ql.JsonataFailed as exc:
            self.add(where, f"invalid JSONata: {exc.detail}")
