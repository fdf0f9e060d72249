"""Typed readers for YAML nodes that record a located error instead of raising.

A builder asks `ctx.string(node, "steps[0].name")`; a wrong type becomes one Diagnostic with
file, line, column, key path and what is allowed, and the builder carries on so that every
error of a file is reported at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from dagd.spec.errors import Diagnostic, Severity
from dagd.spec.keys import CAMEL_TO_SNAKE, REMOVED_HINTS
from dagd.spec.model import ChainRule, Dialect, Location
from dagd.spec.yamlnode import Node


def type_name(node: Node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    v = node.value
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    return "a string"


def scalar_text(v: Any) -> str:
    """A scalar as Dagu stringifies it (shortest decimal, true/false)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer() and math.isfinite(v):
        return str(int(v))
    return str(v)


class Ctx:
    """Where diagnostics of one file are collected while it is built."""

    def __init__(
        self, file: str, dialect: Dialect, *, strict: bool = False, chain: ChainRule = ChainRule.REPLACE
    ) -> None:
        self.strict = strict  # `validate`: Dagu's stricter shape rules
        self.chain = chain  # classic chain DAGs: what an explicit depends means (configured)
        self.no_effect: list[str] = []  # the document being built: keys read but not acted on
        self.forced = False  # the dialect was chosen by the user, not detected
        self.file = file
        self.dialect = dialect
        self.diagnostics: list[Diagnostic] = []
        self._warned: set[str] = set()

    @property
    def classic(self) -> bool:
        return self.dialect is Dialect.CLASSIC

    def error(self, node: Node | Location | None, key: str, message: str) -> None:
        line, col = (node.line, node.col) if node is not None else (0, 0)
        self.diagnostics.append(Diagnostic(self.file, line, col, key, message))

    def warn(self, node: Node | Location | None, key: str, message: str, *, once: str = "") -> None:
        if once:
            if once in self._warned:
                return
            self._warned.add(once)
        line, col = (node.line, node.col) if node is not None else (0, 0)
        self.diagnostics.append(Diagnostic(self.file, line, col, key, message, Severity.WARNING))

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    # ---- mappings -------------------------------------------------------------------------

    def mapping(self, node: Node, key: str, allowed: Iterable[str], *, what: str = "") -> dict[str, Node] | None:
        """The node's entries with legacy spellings normalised; unknown keys are errors."""
        if node.kind != "map":
            self.error(node, key, f"must be a mapping, got {type_name(node)}")
            return None
        allowed_set = set(allowed)
        out: dict[str, Node] = {}
        invalid: list[str] = []
        for raw, value in node.value.items():
            name = normalise_key(raw, allowed_set)
            knode = node.keys.get(raw, node)
            if name is None:
                invalid.append(raw)
                self.error(knode, _join(key, raw), unknown_key_message(raw, allowed_set, what))
                continue
            if name != raw:
                self.warn(
                    knode,
                    _join(key, raw),
                    f'"{raw}" is the Dagu 1.x spelling; use "{name}"',
                    once=f"camel:{raw}",
                )
            if name in out:
                self.error(knode, _join(key, raw), f'"{raw}" and "{name}" are the same key; keep one')
                continue
            out[name] = value
        return out

    # ---- scalars --------------------------------------------------------------------------

    def string(self, node: Node, key: str, *, allow_scalars: bool = True) -> str | None:
        if node.kind != "scalar" or node.value is None:
            self.error(node, key, f"must be a string, got {type_name(node)}")
            return None
        if isinstance(node.value, str):
            return node.value
        if not allow_scalars:
            self.error(node, key, f"must be a string, got {type_name(node)}")
            return None
        return scalar_text(node.value)

    def boolean(self, node: Node, key: str) -> bool | None:
        v = node.value
        if node.kind == "scalar" and isinstance(v, bool):
            return v
        if node.kind == "scalar" and isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        self.error(node, key, f"must be true or false, got {type_name(node)}")
        return None

    def integer(self, node: Node, key: str, *, minimum: int | None = 0) -> int | None:
        v = node.value
        if node.kind == "scalar" and isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v.strip())
        if node.kind != "scalar" or isinstance(v, bool) or not isinstance(v, int):
            self.error(node, key, f"must be an integer, got {type_name(node)}")
            return None
        if minimum is not None and v < minimum:
            self.error(node, key, f"must be >= {minimum}, got {v}")
            return None
        return v

    def number(self, node: Node, key: str, *, minimum: float | None = 0) -> float | None:
        v = node.value
        if node.kind == "scalar" and isinstance(v, str):
            with contextlib.suppress(ValueError):
                v = float(v.strip())
        if node.kind != "scalar" or isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(node, key, f"must be a number, got {type_name(node)}")
            return None
        if not math.isfinite(v):
            self.error(node, key, "must be a finite number")
            return None
        if minimum is not None and v < minimum:
            self.error(node, key, f"must be >= {minimum:g}, got {v:g}")
            return None
        return float(v)

    def int_or_ref(self, node: Node, key: str) -> int | str | None:
        """An integer, or a string to be resolved at run time ("${RETRIES}")."""
        if node.kind == "scalar" and isinstance(node.value, str) and "$" in node.value:
            return node.value
        return self.integer(node, key)

    def number_or_ref(self, node: Node, key: str) -> float | str | None:
        if node.kind == "scalar" and isinstance(node.value, str) and "$" in node.value:
            return node.value
        return self.number(node, key)

    def string_list(self, node: Node, key: str) -> list[str] | None:
        """A string or a list of scalars, as strings."""
        if node.kind == "scalar" and node.value is not None:
            return [scalar_text(node.value)]
        if node.kind != "seq":
            self.error(node, key, f"must be a string or a list of strings, got {type_name(node)}")
            return None
        out: list[str] = []
        for i, item in enumerate(node.value):
            s = self.string(item, f"{key}[{i}]")
            if s is not None:
                out.append(s)
        return out

    def int_list(self, node: Node, key: str) -> tuple[int, ...] | None:
        items = node.value if node.kind == "seq" else [node]
        out: list[int] = []
        for i, item in enumerate(items):
            v = self.integer(item, f"{key}[{i}]" if node.kind == "seq" else key, minimum=None)
            if v is None:
                return None
            out.append(v)
        return tuple(out)


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def normalise_key(raw: str, allowed: set[str]) -> str | None:
    """The canonical name of a key: itself, its snake_case form, or a case-insensitive match."""
    if raw in allowed:
        return raw
    snake = CAMEL_TO_SNAKE.get(raw)
    if snake and snake in allowed:
        return snake
    folded = raw.replace("_", "").lower()
    for name in allowed:
        if name.replace("_", "").lower() == folded:
            return name
    return None


def unknown_key_message(raw: str, allowed: set[str], what: str) -> str:
    hint = REMOVED_HINTS.get(raw)
    if hint:
        return f"has invalid keys: {raw} ({hint})"
    where = f" of {what}" if what else ""
    shown = ", ".join(sorted(k for k in allowed if not k.startswith("_")))
    return f"has invalid keys: {raw} (unknown key{where}; allowed: {shown})"


def thaw(value: Any) -> Any:
    """Read-only spec data (mappingproxies, tuples) as plain, JSON-able data."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def frozen(value: Any) -> Any:
    """Plain data made read-only: dicts become mappingproxies, lists tuples."""
    from types import MappingProxyType

    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value
