"""DAG `params`: every form Dagu accepts, read into declared Params; and CLI-style param strings."""

from __future__ import annotations

import json
import re
from typing import Any

from dagd.spec.fields import Ctx, scalar_text, type_name
from dagd.spec.keys import PARAM_KEYS
from dagd.spec.model import Param
from dagd.spec.yamlnode import Node

PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CLASSIC_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TOKEN = re.compile(r'(?:([^\s=]+)=)?("(?:\\"|[^"])*"|`[^`]*`|[^"\s]+)')
PARAM_TYPES = ("string", "integer", "number", "boolean")


def split_param_string(text: str) -> list[tuple[str | None, str]]:
    """`a b K=V X="y z"` → [(None, a), (None, b), (K, V), (X, y z)] as Dagu tokenises it."""
    out: list[tuple[str | None, str]] = []
    for m in _TOKEN.finditer(text):
        name, value = m.group(1), m.group(2)
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1].replace('\\"', '"')
        out.append((name, value))
    return out


def parse_params(ctx: Ctx, node: Node, key: str = "params") -> tuple[tuple[Param, ...], str | None]:
    """(declared params, the original JSON text when params were given as JSON)."""
    if node.kind == "scalar":
        if node.value is None:
            return (), None
        text = scalar_text(node.value)
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return tuple(Param(str(k), _text(v)) for k, v in data.items()), stripped
        params = [Param(n, v) for n, v in split_param_string(text)]
        return _checked(ctx, node, key, params), None
    if node.kind == "map":
        m = node.value
        if "schema" in m or ("type" in m and "properties" in m):
            return _schema_params(ctx, node, key), None
        params = [Param(k, _text(v.plain())) for k, v in sorted(m.items())]
        return _checked(ctx, node, key, params), None
    if node.kind != "seq":
        ctx.error(node, key, f"params must be a string, mapping or list, got {type_name(node)}")
        return (), None
    params = []
    for i, item in enumerate(node.value):
        k = f"{key}[{i}]"
        if item.kind == "scalar":
            text = scalar_text(item.value)
            name, eq, value = text.partition("=")
            params.append(Param(name, value) if eq and " " not in name else Param(None, text))
        elif item.kind == "map" and "name" in item.value:
            p = _rich(ctx, item, k)
            if p is not None:
                params.append(p)
        elif item.kind == "map" and item.value:
            # `- A: 1` — and, as Dagu's loader reads it, `- {B: 2, A: 1}`: every key, sorted
            for name, v in sorted(item.value.items()):
                if v.kind == "map":
                    ctx.error(
                        item,
                        k,
                        f"inline parameter definitions must use object form with name; rewrite as - name: {name}",
                    )
                    continue
                params.append(Param(name, _text(v.plain())))
        else:
            ctx.error(
                item,
                k,
                f"params entries must be strings, maps of names to values or {{name: …}} objects, got {type_name(item)}",
            )
    return _checked(ctx, node, key, params), None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return scalar_text(v)


def _rich(ctx: Ctx, node: Node, key: str) -> Param | None:
    m = ctx.mapping(node, key, PARAM_KEYS, what="a parameter definition")
    if m is None:
        return None
    if len(m) < 2:
        ctx.error(node, key, "a parameter definition needs at least one field besides name")
    name = scalar_text(m["name"].value) if m["name"].kind == "scalar" else ""
    typ = scalar_text(m["type"].value) if "type" in m else "string"
    if typ not in PARAM_TYPES:
        ctx.error(m["type"], f"{key}.type", f'params type must be one of {", ".join(PARAM_TYPES)}, got "{typ}"')

    def num(k: str) -> float | None:
        return ctx.number(m[k], f"{key}.{k}", minimum=None) if k in m else None

    def count(k: str) -> int | None:
        return ctx.integer(m[k], f"{key}.{k}") if k in m else None

    pattern = ctx.string(m["pattern"], f"{key}.pattern") if "pattern" in m else None
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            ctx.error(m["pattern"], f"{key}.pattern", f"invalid regexp: {exc}")
    enum = tuple(m["enum"].plain()) if "enum" in m and m["enum"].kind == "seq" else ()
    return Param(
        name=name,
        default=_text(m["default"].plain()) if "default" in m else None,
        type=typ,
        required=bool(ctx.boolean(m["required"], f"{key}.required")) if "required" in m else False,
        eval=ctx.string(m["eval"], f"{key}.eval") if "eval" in m else None,
        description=(ctx.string(m["description"], f"{key}.description") or "") if "description" in m else "",
        enum=enum,
        minimum=num("minimum"),
        maximum=num("maximum"),
        min_length=count("min_length"),
        max_length=count("max_length"),
        pattern=pattern,
    )


def _schema_params(ctx: Ctx, node: Node, key: str) -> tuple[Param, ...]:
    data = node.plain()
    schema = data.get("schema", data)
    values = data.get("values") or {}
    if not isinstance(schema, dict):  # an external schema file or URL: declared at run time
        return tuple(Param(str(k), _text(v)) for k, v in values.items())
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out = []
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        default = values.get(name, spec.get("default"))
        typ = spec.get("type", "string")
        out.append(
            Param(
                str(name),
                _text(default),
                typ if typ in PARAM_TYPES else "string",
                name in required,
                description=str(spec.get("description", "")),
                enum=tuple(spec.get("enum") or ()),
            )
        )
    return _checked(ctx, node, key, out)


def _checked(ctx: Ctx, node: Node, key: str, params: list[Param]) -> tuple[Param, ...]:
    rule = CLASSIC_PARAM_NAME if ctx.classic else PARAM_NAME
    seen: set[str] = set()
    for p in params:
        if p.name is None:
            continue
        if not rule.match(p.name):
            ctx.error(node, key, f'params: parameter name "{p.name}" must match {rule.pattern}')
        elif p.name in seen:
            ctx.error(node, key, f'params: duplicate parameter name "{p.name}"')
        seen.add(p.name)
    return tuple(params)
