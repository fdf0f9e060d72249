"""Go's text/template, for `template.render` (Dagu 1.x `type: template`): the template language
Dagu renders, with `missingkey=error` and the hermetic Sprig functions Dagu offers.

The language: text and `{{ }}` actions with `{{-` / `-}}` trimming and `{{/* */}}` comments;
pipelines (`.a.b | lower | replace " " "-"`, the previous value as the last argument);
fields and map keys (`.x`, `$v.y`, `$` the root), literals (quoted and raw strings, numbers,
true/false/nil), parenthesised pipelines, variables (`$x := …`, `$x = …`), `if` / `else if` /
`else`, `range` (lists, maps in key order, integers; `$i, $e :=`; `else`; `break`, `continue`),
`with` / `else`, and Go's truth (false, 0, nil, empty string or collection are false). Values
print as Go prints them (`<no value>` for nil, `[a b]`, `map[k:v]`). `define`, `template` and
`block` are refused with a clear message, as is a function that is not in FUNCS."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    pass


# ---- values ----------------------------------------------------------------------------------


def truth(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


def fmt(v: Any) -> str:
    """fmt.Sprint of a value decoded from YAML/JSON."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        if v == int(v) and abs(v) < 1e21:
            return str(int(v))
        text = repr(v)
        return re.sub(r"e([+-])0*(\d\d)", r"e\1\2", text) if "e" in text else text
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_inner(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return (
            "map[" + " ".join(f"{_inner(k)}:{_inner(x)}" for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))) + "]"
        )
    return str(v)


def _inner(v: Any) -> str:
    return "<nil>" if v is None else fmt(v)


def _num(v: Any, fn: str) -> int | float:
    if isinstance(v, bool):
        raise TemplateError(f"{fn}: expected a number, got {fmt(v)}")
    if isinstance(v, (int, float)):
        return v
    try:
        return int(str(v))
    except ValueError:
        try:
            return float(str(v))
        except ValueError:
            raise TemplateError(f"{fn}: expected a number, got {v!r}") from None


def _int(v: Any, fn: str) -> int:
    n = _num(v, fn)
    return int(n)


def _list(v: Any, fn: str) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    raise TemplateError(f"{fn}: expected a list, got {fmt(v)}")


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else fmt(v))


def _default(d: Any, v: Any = None) -> Any:
    return v if truth(v) else d


def _join(sep: Any, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return _s(sep).join(fmt(x) if not isinstance(x, str) else x for x in v)
    raise TemplateError(f"join: unsupported type {fmt(v)}")


def _count(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, (list, tuple, dict, str)):
        return len(v)
    raise TemplateError(f"count: unsupported type {fmt(v)}")


def _get(d: Any, k: Any) -> Any:
    return d.get(_s(k), "") if isinstance(d, Mapping) else ""


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, Mapping):
            v = v.get(k) if k in v else None
        elif isinstance(v, (list, tuple, str)):
            i = _int(k, "index")
            if not 0 <= i < len(v):
                raise TemplateError(f"index out of range: {i}")
            v = v[i]
        else:
            raise TemplateError(f"can't index item of type {fmt(v)}")
    return v


def _printf(f: Any, *args: Any) -> str:
    text = _s(f)
    out, i, a = [], 0, 0
    while i < len(text):
        c = text[i]
        if c != "%" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        m = re.match(r"%([-+ 0#]*)(\d*)(?:\.(\d+))?([vsdqfgtxXeEoc%])", text[i:])
        if not m:
            out.append(c)
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i += m.end()
        if verb == "%":
            out.append("%")
            continue
        arg = args[a] if a < len(args) else None
        a += 1
        if verb in "vst":
            piece = fmt(arg) if not isinstance(arg, str) else arg
        elif verb == "q":
            piece = json.dumps(_s(arg))
        elif verb == "d":
            piece = str(_int(arg, "printf"))
        elif verb in "fgeE":
            piece = format(float(_num(arg, "printf")), (f".{prec}" if prec else ".6" if verb == "f" else "") + verb)
        elif verb in "xX":
            piece = format(_int(arg, "printf"), verb) if not isinstance(arg, str) else arg.encode().hex()
        elif verb == "o":
            piece = format(_int(arg, "printf"), "o")
        else:
            piece = chr(_int(arg, "printf"))
        if width:
            piece = piece.ljust(int(width)) if "-" in flags else piece.rjust(int(width), "0" if "0" in flags else " ")
        out.append(piece)
    return "".join(out)


def _uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(v, "uniq"):
        if x not in out:
            out.append(x)
    return out


def _dict(*kv: Any) -> dict[str, Any]:
    return {_s(kv[i]): (kv[i + 1] if i + 1 < len(kv) else "") for i in range(0, len(kv), 2)}


def _cmp(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError:
            raise TemplateError(f"{name}: incompatible types for comparison") from None

    return compare


def _eq(a: Any, *bs: Any) -> bool:
    return any(a == b for b in bs)


def _div(a: Any, b: Any) -> Any:
    d = _num(b, "div")
    if d == 0:
        raise TemplateError("div: division by zero")
    n = _num(a, "div")
    return int(n / d) if isinstance(n, int) and isinstance(d, int) else n / d


FUNCS: dict[str, Callable[..., Any]] = {
    # Dagu's own overrides (the piped value last)
    "split": lambda sep, s: _s(s).split(_s(sep)),
    "join": _join,
    "count": _count,
    "add": lambda b, a: _num(a, "add") + _num(b, "add"),
    "empty": lambda v=None: not truth(v),
    "upper": lambda s: _s(s).upper(),
    "lower": lambda s: _s(s).lower(),
    "trim": lambda s: _s(s).strip(),
    "default": _default,
    # text/template's builtins
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1] if a else None),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1] if a else None),
    "not": lambda v: not truth(v),
    "len": lambda v: len(v) if isinstance(v, (list, tuple, dict, str)) else _count(v),
    "index": _index,
    "print": lambda *a: "".join(_s(x) if isinstance(x, str) else fmt(x) for x in a),
    "println": lambda *a: " ".join(_s(x) if isinstance(x, str) else fmt(x) for x in a) + "\n",
    "printf": _printf,
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "lt": _cmp("lt", lambda a, b: a < b),
    "le": _cmp("le", lambda a, b: a <= b),
    "gt": _cmp("gt", lambda a, b: a > b),
    "ge": _cmp("ge", lambda a, b: a >= b),
    "html": lambda s: _s(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;"),
    "urlquery": lambda s: re.sub(r"[^A-Za-z0-9_.~-]", lambda m: f"%{ord(m.group()):02X}", _s(s)),
    # Sprig (hermetic): strings
    "trimPrefix": lambda p, s: _s(s).removeprefix(_s(p)),
    "trimSuffix": lambda p, s: _s(s).removesuffix(_s(p)),
    "trimAll": lambda c, s: _s(s).strip(_s(c)),
    "title": lambda s: _s(s).title(),
    "replace": lambda old, new, s: _s(s).replace(_s(old), _s(new)),
    "contains": lambda sub, s: _s(sub) in _s(s),
    "hasPrefix": lambda p, s: _s(s).startswith(_s(p)),
    "hasSuffix": lambda p, s: _s(s).endswith(_s(p)),
    "repeat": lambda n, s: _s(s) * _int(n, "repeat"),
    "substr": lambda a, b, s: _s(s)[_int(a, "substr") : _int(b, "substr")],
    "trunc": lambda n, s: _s(s)[: _int(n, "trunc")] if _int(n, "trunc") >= 0 else _s(s)[_int(n, "trunc") :],
    "quote": lambda *a: " ".join(json.dumps(_s(x)) for x in a),
    "squote": lambda *a: " ".join(f"'{_s(x)}'" for x in a),
    "indent": lambda n, s: "\n".join(" " * _int(n, "indent") + line for line in _s(s).split("\n")),
    "nindent": lambda n, s: "\n" + "\n".join(" " * _int(n, "nindent") + line for line in _s(s).split("\n")),
    "splitList": lambda sep, s: _s(s).split(_s(sep)),
    "toString": lambda v: _s(v),
    "cat": lambda *a: " ".join(_s(x) for x in a if x is not None),
    "regexMatch": lambda r, s: re.search(_s(r), _s(s)) is not None,
    "regexReplaceAll": lambda r, s, repl: re.sub(_s(r), re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", _s(repl)), _s(s)),
    "regexFind": lambda r, s: m.group(0) if (m := re.search(_s(r), _s(s))) else "",
    "b64enc": lambda s: base64.b64encode(_s(s).encode()).decode(),
    "b64dec": lambda s: base64.b64decode(_s(s)).decode(errors="replace"),
    "sha256sum": lambda s: hashlib.sha256(_s(s).encode()).hexdigest(),
    "toJson": lambda v: json.dumps(v, separators=(",", ":")),
    "toPrettyJson": lambda v: json.dumps(v, indent=2),
    "atoi": lambda s: int(_s(s)) if re.fullmatch(r"[+-]?\d+", _s(s).strip()) else 0,
    "int": lambda v: _int(v, "int"),
    "float64": lambda v: float(_num(v, "float64")),
    "ternary": lambda a, b, c: a if truth(c) else b,
    "coalesce": lambda *a: next((x for x in a if truth(x)), None),
    # lists
    "list": lambda *a: list(a),
    "first": lambda v: (_list(v, "first") or [None])[0],
    "last": lambda v: (_list(v, "last") or [None])[-1],
    "rest": lambda v: _list(v, "rest")[1:],
    "initial": lambda v: _list(v, "initial")[:-1],
    "uniq": _uniq,
    "sortAlpha": lambda v: sorted(_s(x) for x in _list(v, "sortAlpha")),
    "reverse": lambda v: list(reversed(_list(v, "reverse"))),
    "has": lambda x, v: x in _list(v, "has"),
    "compact": lambda v: [x for x in _list(v, "compact") if truth(x)],
    "append": lambda v, x: [*_list(v, "append"), x],
    "prepend": lambda v, x: [x, *_list(v, "prepend")],
    "concat": lambda *a: [x for v in a for x in _list(v, "concat")],
    "without": lambda v, *xs: [x for x in _list(v, "without") if x not in xs],
    "until": lambda n: list(range(_int(n, "until"))),
    "seq": lambda *a: list(range(_int(a[0], "seq"), _int(a[-1], "seq") + 1)) if a else [],
    # dicts
    "dict": _dict,
    "get": _get,
    "hasKey": lambda d, k: isinstance(d, Mapping) and _s(k) in d,
    "keys": lambda *ds: sorted(k for d in ds if isinstance(d, Mapping) for k in d),
    "values": lambda d: [d[k] for k in sorted(d)] if isinstance(d, Mapping) else [],
    "pick": lambda d, *ks: {k: d[k] for k in map(_s, ks) if isinstance(d, Mapping) and k in d},
    "omit": lambda d, *ks: {k: v for k, v in (d.items() if isinstance(d, Mapping) else []) if k not in map(_s, ks)},
    "merge": lambda d, *others: {
        **{k: v for o in reversed(others) if isinstance(o, Mapping) for k, v in o.items()},
        **d,
    },
    # math
    "add1": lambda a: _num(a, "add1") + 1,
    "sub": lambda a, b: _num(a, "sub") - _num(b, "sub"),
    "mul": lambda *a: math.prod(_num(x, "mul") for x in a),
    "div": _div,
    "mod": lambda a, b: _int(a, "mod") % _int(b, "mod"),
    "max": lambda *a: max(_num(x, "max") for x in a),
    "min": lambda *a: min(_num(x, "min") for x in a),
    "floor": lambda a: math.floor(_num(a, "floor")),
    "ceil": lambda a: math.ceil(_num(a, "ceil")),
    "round": lambda a, p=0: round(_num(a, "round"), _int(p, "round")),
}
BLOCKED = {"env", "expandenv", "now", "date", "randAlphaNum", "randAlpha", "randInt", "uuidv4", "getHostByName"}


# ---- lexing and parsing ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<raw>`[^`]*`)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<char>'(?:[^'\\]|\\.)')
    | (?P<num>[+-]?(?:0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?))
    | (?P<decl>:=)
    | (?P<assign>=)
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
    | (?P<dot>\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<pipe>\|)
    | (?P<lp>\()
    | (?P<rp>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)


@dataclass
class Node:
    kind: str  # text, action, if, range, with, set
    text: str = ""
    pipe: list[Any] = field(default_factory=list)
    decl: list[str] = field(default_factory=list)
    assign: bool = False  # `$x = …` (not a declaration)
    body: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)
    line: int = 1


def _tokens(src: str, line: int) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"line {line}: unexpected {src[pos:].strip()[:20]!r} in action")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
        if pos < len(src) and not src[pos:].strip():
            break
    return out


def _split_actions(text: str) -> Iterator[tuple[str, str, int]]:
    """('text', s, line) and ('action', inner, line) pieces, with trim markers applied."""
    pos, line = 0, 1
    pending_trim = False
    while True:
        start = text.find("{{", pos)
        if start < 0:
            piece = text[pos:]
            yield "text", piece.lstrip() if pending_trim else piece, line
            return
        piece = text[pos:start]
        if pending_trim:
            piece = piece.lstrip()
        inner_start = start + 2
        if (
            text.startswith("- ", inner_start)
            or text.startswith("-\t", inner_start)
            or text.startswith("-\n", inner_start)
        ):
            piece = piece.rstrip()
            inner_start += 1
        yield "text", piece, line
        line += text.count("\n", pos, start)
        if text[inner_start:].lstrip().startswith("/*"):
            end = text.find("*/", inner_start)
            if end < 0:
                raise TemplateError(f"line {line}: unclosed comment")
            close = text.find("}}", end)
        else:
            close = _find_close(text, inner_start, line)
        if close < 0:
            raise TemplateError(f"line {line}: unclosed action")
        inner = text[inner_start:close]
        pending_trim = inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-")
        if pending_trim:
            inner = inner[:-1]
        yield "action", inner, line
        line += text.count("\n", start, close)
        pos = close + 2


def _find_close(text: str, pos: int, line: int) -> int:
    i = pos
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    return -1


class _Parser:
    def __init__(self, text: str) -> None:
        self.pieces = list(_split_actions(text))
        self.i = 0

    def parse(self) -> list[Node]:
        nodes, end = self._list(())
        if end is not None:
            raise TemplateError(f"line {end[1]}: unexpected {{{{{end[0]}}}}}")
        return nodes

    def _list(self, stops: tuple[str, ...]) -> tuple[list[Node], tuple[str, int, list[tuple[str, str]]] | None]:
        nodes: list[Node] = []
        while self.i < len(self.pieces):
            kind, content, line = self.pieces[self.i]
            self.i += 1
            if kind == "text":
                if content:
                    nodes.append(Node("text", text=content, line=line))
                continue
            stripped = content.strip()
            if stripped.startswith("/*"):
                continue
            toks = _tokens(stripped, line)
            if not toks:
                raise TemplateError(f"line {line}: missing value for command")
            word = toks[0][1] if toks[0][0] == "ident" else ""
            if word in ("end", "else"):
                if word not in stops:
                    raise TemplateError(f"line {line}: unexpected {{{{{word}}}}}")
                return nodes, (word, line, toks[1:])
            if word in ("if", "with", "range"):
                nodes.append(self._block(word, toks[1:], line))
            elif word in ("break", "continue"):
                nodes.append(Node(word, line=line))
            elif word in ("define", "template", "block"):
                raise TemplateError(f"line {line}: {{{{{word}}}}} is not supported by dagd's template.render")
            else:
                nodes.append(self._action(toks, line))
        if stops:
            raise TemplateError("unexpected end of template: missing {{end}}")
        return nodes, None

    def _action(self, toks: list[tuple[str, str]], line: int) -> Node:
        decl: list[str] = []
        assign = False
        if len(toks) >= 3 and toks[0][0] == "var" and toks[1][0] in ("decl", "assign"):
            decl, assign, toks = [toks[0][1]], toks[1][0] == "assign", toks[2:]
        elif (
            len(toks) >= 5
            and toks[0][0] == "var"
            and toks[1][0] == "comma"
            and toks[2][0] == "var"
            and toks[3][0] == "decl"
        ):
            decl, toks = [toks[0][1], toks[2][1]], toks[4:]
        return Node("action", pipe=_pipeline(toks, line), decl=decl, assign=assign, line=line)

    def _block(self, word: str, toks: list[tuple[str, str]], line: int) -> Node:
        head = self._action(toks, line)
        node = Node(word, pipe=head.pipe, decl=head.decl, line=line)
        node.body, end = self._list(("end", "else"))
        assert end is not None
        if end[0] == "else":
            rest = end[2]
            if rest and rest[0] == ("ident", "if"):
                # `else if`: the rest of the chain is one nested block in the else branch
                nested = self._block("if", rest[1:], end[1])
                node.orelse = [nested]
                return node
            node.orelse, end2 = self._list(("end",))
            assert end2 is not None
        return node


def _pipeline(toks: list[tuple[str, str]], line: int) -> list[list[Any]]:
    """Commands separated by |; each a list of operands (tokens or nested pipelines)."""
    cmds: list[list[Any]] = [[]]
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "pipe":
            if not cmds[-1]:
                raise TemplateError(f"line {line}: missing command before |")
            cmds.append([])
        elif kind == "lp":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"lp": 1, "rp": -1}.get(toks[j][0], 0)
                j += 1
            if depth:
                raise TemplateError(f"line {line}: unclosed (")
            inner = _pipeline(toks[i + 1 : j - 1], line)
            field_tail = ""
            if j < len(toks) and toks[j][0] == "field":  # (pipeline).field
                field_tail, j = toks[j][1], j + 1
            cmds[-1].append(("paren", (inner, field_tail)))
            i = j
            continue
        elif kind in ("rp", "decl", "assign", "comma"):
            raise TemplateError(f"line {line}: unexpected {text!r}")
        else:
            cmds[-1].append((kind, text))
        i += 1
    if not cmds[-1]:
        raise TemplateError(f"line {line}: missing value for command")
    return cmds


# ---- evaluation ------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _field(v: Any, chain: str, line: int) -> Any:
    for name in chain.split(".")[1:]:
        if isinstance(v, Mapping):
            if name not in v:
                raise TemplateError(f"line {line}: map has no entry for key {name!r}")
            v = v[name]
        elif v is None:
            raise TemplateError(f"line {line}: nil pointer evaluating .{name}")
        else:
            raise TemplateError(f"line {line}: can't evaluate field {name} in type {type(v).__name__}")
    return v


class _Exec:
    def __init__(self, root: Any) -> None:
        self.vars: list[dict[str, Any]] = [{"$": root}]
        self.out: list[str] = []

    def var(self, name: str, line: int) -> Any:
        for scope in reversed(self.vars):
            if name in scope:
                return scope[name]
        raise TemplateError(f"line {line}: undefined variable {name}")

    def set_var(self, name: str, value: Any, line: int) -> None:
        for scope in reversed(self.vars):
            if name in scope:
                scope[name] = value
                return
        raise TemplateError(f"line {line}: undefined variable {name}")

    def operand(self, op: tuple[str, Any], dot: Any, line: int) -> Any:
        kind, text = op
        if kind == "str":
            return json.loads(text) if "\\" in text else text[1:-1]
        if kind == "raw":
            return text[1:-1]
        if kind == "char":
            return ord(json.loads('"' + text[1:-1].replace('"', '\\"') + '"'))
        if kind == "num":
            if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text):
                return int(text, 16)
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "dot":
            return dot
        if kind == "field":
            return _field(dot, text, line)
        if kind == "var":
            name, _, rest = text.partition(".")
            value = self.var(name, line)
            return _field(value, "." + rest, line) if rest else value
        if kind == "ident":
            if text in ("true", "false"):
                return text == "true"
            if text == "nil":
                return None
            return self.call(text, [], line)
        if kind == "paren":
            inner, tail = text
            value = self.pipe(inner, dot, line)
            return _field(value, tail, line) if tail else value
        raise TemplateError(f"line {line}: unexpected {text!r}")

    def call(self, name: str, args: list[Any], line: int) -> Any:
        if name in BLOCKED:
            raise TemplateError(f"line {line}: function {name!r} is not available (blocked, as in Dagu)")
        fn = FUNCS.get(name)
        if fn is None:
            raise TemplateError(f'line {line}: function "{name}" not defined')
        try:
            return fn(*args)
        except TemplateError:
            raise
        except TypeError:
            raise TemplateError(f"line {line}: wrong number of arguments for {name}: {len(args)}") from None
        except (ValueError, ArithmeticError, KeyError) as exc:
            raise TemplateError(f"line {line}: error calling {name}: {exc}") from None

    def command(self, cmd: list[Any], dot: Any, line: int, piped: tuple[Any] | None) -> Any:
        head = cmd[0]
        if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
            args = [self.operand(a, dot, line) for a in cmd[1:]]
            if piped is not None:
                args.append(piped[0])
            return self.call(head[1], args, line)
        if len(cmd) > 1 or piped is not None:
            raise TemplateError(f"line {line}: can't give argument to non-function {head[1]!r}")
        return self.operand(head, dot, line)

    def pipe(self, cmds: list[list[Any]], dot: Any, line: int) -> Any:
        value: tuple[Any] | None = None
        for cmd in cmds:
            value = (self.command(cmd, dot, line, value),)
        assert value is not None
        return value[0]

    def run(self, nodes: list[Node], dot: Any) -> None:
        for n in nodes:
            if n.kind == "text":
                self.out.append(n.text)
            elif n.kind == "action":
                value = self.pipe(n.pipe, dot, n.line)
                if n.decl:
                    if n.assign:
                        self.set_var(n.decl[0], value, n.line)
                    else:
                        self.vars[-1][n.decl[0]] = value
                else:
                    self.out.append(fmt(value) if not isinstance(value, str) else value)
            elif n.kind == "if":
                self._scoped(n.body if truth(self.pipe(n.pipe, dot, n.line)) else n.orelse, dot)
            elif n.kind == "with":
                value = self.pipe(n.pipe, dot, n.line)
                if truth(value):
                    self.vars.append({n.decl[0]: value} if n.decl else {})
                    try:
                        self.run(n.body, value)
                    finally:
                        self.vars.pop()
                else:
                    self._scoped(n.orelse, dot)
            elif n.kind == "range":
                self._range(n, dot)
            elif n.kind == "break":
                raise _Break
            elif n.kind == "continue":
                raise _Continue

    def _scoped(self, nodes: list[Node], dot: Any) -> None:
        self.vars.append({})
        try:
            self.run(nodes, dot)
        finally:
            self.vars.pop()

    def _range(self, n: Node, dot: Any) -> None:
        value = self.pipe(n.pipe, dot, n.line)
        if isinstance(value, Mapping):
            items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None:
            items = []
        else:
            raise TemplateError(f"line {n.line}: range can't iterate over {fmt(value)}")
        if not items:
            self._scoped(n.orelse, dot)
            return
        for k, v in items:
            scope: dict[str, Any] = {}
            if len(n.decl) == 1:
                scope[n.decl[0]] = v
            elif len(n.decl) == 2:
                scope[n.decl[0]], scope[n.decl[1]] = k, v
            self.vars.append(scope)
            try:
                self.run(n.body, v)
            except _Continue:
                continue
            except _Break:
                break
            finally:
                self.vars.pop()


def render(template: str, data: Any) -> str:
    """The template rendered with `data` as its dot; TemplateError says what is wrong, where."""
    nodes = _Parser(template).parse()
    ex = _Exec(data)
    ex.run(nodes, data)
    return "".join(ex.out)
