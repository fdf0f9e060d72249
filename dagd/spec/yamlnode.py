"""YAML text → a tree of located nodes, safely.

Built from the parser's event stream with an explicit stack instead of PyYAML's recursive
composer, so absurd nesting cannot overflow a stack, and every alias is charged its full
expanded size, so an alias bomb is refused after a bounded amount of work. Duplicate keys are
errors (Dagu: "already defined"); `<<` merge keys are honoured as YAML 1.1 defines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is present in every supported install
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000  # expanded through aliases

_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class YamlProblem(Exception):
    def __init__(self, message: str, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.others: list[YamlProblem] = []


@dataclass(slots=True)
class Node:
    """A YAML value with its position. `value` is a scalar, a list of Nodes or a dict of Nodes."""

    value: Any
    line: int
    col: int
    kind: str  # "scalar" | "seq" | "map"
    tag: str = ""
    size: int = 1
    keys: dict[str, Node] = field(default_factory=dict)  # map only: key nodes, for positions
    raw: str = ""  # scalar only: the source text
    merged: set[str] = field(default_factory=set)  # map only: keys that came from `<<`

    def plain(self) -> Any:
        """The value as plain Python data (lists, dicts, scalars)."""
        if self.kind == "seq":
            return [n.plain() for n in self.value]
        if self.kind == "map":
            return {k: n.plain() for k, n in self.value.items()}
        return self.value


def _line(ev: yaml.Event) -> int:
    return ev.start_mark.line + 1 if ev.start_mark is not None else 0


def _col(ev: yaml.Event) -> int:
    return ev.start_mark.column + 1 if ev.start_mark is not None else 0


def _scalar(ev: yaml.ScalarEvent) -> Node:
    line, col = _line(ev), _col(ev)
    tag = ev.tag
    if tag is None or tag == "!":
        implicit = ev.implicit[0]
        tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, (True, False)) if implicit else "tag:yaml.org,2002:str"  # type: ignore[no-untyped-call]
    value: Any = ev.value
    try:
        if tag == "tag:yaml.org,2002:null":
            value = None
        elif tag == "tag:yaml.org,2002:bool":
            value = ev.value.lower() in ("yes", "true", "on", "y")
        elif tag == "tag:yaml.org,2002:int":
            value = _CONSTRUCTOR.construct_yaml_int(yaml.ScalarNode(tag, ev.value))
        elif tag == "tag:yaml.org,2002:float":
            text = ev.value.replace("_", "").lower()
            if text in (".nan",):
                value = math.nan
            elif text in (".inf", "+.inf"):
                value = math.inf
            elif text == "-.inf":
                value = -math.inf
            else:
                value = float(text)
    except (ValueError, TypeError):
        value = ev.value
    return Node(value, line, col, "scalar", tag or "", 1, raw=ev.value)


class _Builder:
    def __init__(self) -> None:
        self.anchors: dict[str, Node] = {}
        self.total = 0

    def charge(self, node: Node) -> None:
        self.total += node.size
        if self.total > MAX_NODES:
            raise YamlProblem(
                f"document expands to more than {MAX_NODES} values (alias bomb or absurd size)",
                node.line,
                node.col,
            )


def _add_to_map(parent: Node, key: Node, value: Node, problems: list[YamlProblem]) -> None:
    if key.kind != "scalar":
        problems.append(YamlProblem("mapping keys must be plain scalars", key.line, key.col))
        return
    name = key.raw if key.tag != "tag:yaml.org,2002:null" or key.raw else ""
    if key.tag == "tag:yaml.org,2002:merge" or (name == "<<" and key.tag != "tag:yaml.org,2002:str"):
        sources = [value] if value.kind == "map" else list(value.value) if value.kind == "seq" else []
        for src in sources:
            if src.kind != "map":
                problems.append(YamlProblem("merge key '<<' needs a mapping", src.line, src.col))
                continue
            for k, v in src.value.items():
                if k not in parent.value:
                    parent.value[k] = v
                    parent.keys[k] = src.keys[k]
                    parent.merged.add(k)
                    parent.size += v.size
        return
    if name in parent.value and name not in parent.merged:
        problems.append(YamlProblem(f'mapping key "{name}" already defined', key.line, key.col))
        return
    if name in parent.merged:
        parent.merged.discard(name)
        parent.size -= parent.value[name].size
    parent.value[name] = value
    parent.keys[name] = key
    parent.size += value.size


def compose_documents(text: str) -> list[Node | None]:
    """Every document of a YAML stream as a Node (None for an empty document).

    Raises YamlProblem with the position of the first syntax problem or limit hit.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlProblem(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    docs: list[Node | None] = []
    problems: list[YamlProblem] = []
    builder = _Builder()
    # stack entries: [container Node, pending key Node | None]
    stack: list[list[Any]] = []
    current: Node | None = None
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            node: Node | None = None
            if isinstance(ev, yaml.DocumentStartEvent):
                builder.anchors = {}
                current = None
                continue
            if isinstance(ev, yaml.DocumentEndEvent):
                docs.append(current)
                continue
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise YamlProblem(
                        f"nesting deeper than {MAX_DEPTH} levels",
                        _line(ev),
                        _col(ev),
                    )
                is_map = isinstance(ev, yaml.MappingStartEvent)
                container = Node(
                    {} if is_map else [],
                    _line(ev),
                    _col(ev),
                    "map" if is_map else "seq",
                    ev.tag or "",
                )
                if ev.anchor:
                    builder.anchors[ev.anchor] = container
                stack.append([container, None])
                continue
            if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                node = stack.pop()[0]
            elif isinstance(ev, yaml.ScalarEvent):
                node = _scalar(ev)
                if ev.anchor:
                    builder.anchors[ev.anchor] = node
            elif isinstance(ev, yaml.AliasEvent):
                target = builder.anchors.get(ev.anchor or "")
                if target is None:
                    raise YamlProblem(f'unknown alias "{ev.anchor}"', _line(ev), _col(ev))
                node = target
            else:
                continue
            builder.charge(node)
            if not stack:
                current = node
                continue
            top = stack[-1]
            parent: Node = top[0]
            if parent.kind == "seq":
                parent.value.append(node)
                parent.size += node.size
            elif top[1] is None:
                top[1] = node
            else:
                _add_to_map(parent, top[1], node, problems)
                top[1] = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or exc.context or "syntax error"
        raise YamlProblem(f"invalid yaml: {what}", line, col) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid yaml: {exc}") from None
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels") from None
    if problems:
        problems[0].others = problems[1:]
        raise problems[0]
    return docs
