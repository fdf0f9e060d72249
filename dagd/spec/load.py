"""A DAG file → Dag: YAML documents, base config, dialect, every key, cross-step checks.

`load_file` is the one entry point: it returns the entrypoint Dag (its other documents under
`local_dags`) and the warnings, or raises SpecError carrying every error of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dagd.spec import dagfile
from dagd.spec.dialect import detect
from dagd.spec.errors import Diagnostic, SpecError
from dagd.spec.fields import Ctx
from dagd.spec.model import ChainRule, Dag, Dialect
from dagd.spec.yamlnode import Node, YamlProblem, compose_documents

DAG_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class Loaded:
    dag: Dag
    diagnostics: list[Diagnostic] = field(default_factory=list)  # warnings only


def read_text(path: str) -> str:
    """The file as text; binary junk and oversize files become a clean SpecError."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(8 * 1024 * 1024 + 1)
    except OSError as exc:
        raise SpecError([Diagnostic(path, 0, 0, "", f"cannot read file: {exc.strerror or exc}")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [Diagnostic(path, 0, 0, "", f"not a UTF-8 text file (byte {exc.start}): is this a DAG file?")]
        ) from None


def _compose(text: str, file: str) -> list[Node | None]:
    try:
        return compose_documents(text)
    except YamlProblem as p:
        raise SpecError([Diagnostic(file, q.line, q.col, "", q.message) for q in [p, *p.others]]) from None


_chain_rule = ChainRule.REPLACE


def set_chain_rule(rule: ChainRule) -> None:
    """The process's reading of an explicit depends in classic chain DAGs (config.yaml
    `classic_chain`, `--classic-chain`): set once at start by dagd and dagctl, before any load."""
    global _chain_rule
    _chain_rule = rule


def load_file(
    path: str,
    *,
    base_config: str | None = None,
    strict: bool = False,
    exact: bool = False,
    dag_exists: Callable[[str], bool] | None = None,
    dialect: Dialect | None = None,
    chain: ChainRule | None = None,
) -> Loaded:
    """Load and validate one DAG file.

    strict applies the extra shape rules of `dagu validate` (steps must be a non-empty sequence,
    no empty documents; an entrypoint name in a current file is a warning). exact makes that name
    an error too, as `dagu validate` 2.x does (`dagctl validate --strict`).
    """
    return load_text(
        read_text(path),
        path,
        base_config=base_config,
        strict=strict,
        exact=exact,
        dag_exists=dag_exists,
        dialect=dialect,
        chain=chain,
    )


def load_text(
    text: str,
    file: str,
    *,
    base_config: str | None = None,
    strict: bool = False,
    exact: bool = False,
    dag_exists: Callable[[str], bool] | None = None,
    dialect: Dialect | None = None,
    chain: ChainRule | None = None,
) -> Loaded:
    """As load_file; `dialect` forces a reading instead of detecting it (docs/compat.md), `chain`
    what an explicit depends means in a classic chain DAG (default: set_chain_rule's)."""
    raw_docs = _compose(text, file)
    docs: list[Node] = []
    diags: list[Diagnostic] = []
    for i, d in enumerate(raw_docs):
        if d is None or (d.kind == "scalar" and d.value is None):
            if strict and i > 0 and any(x is not None for x in raw_docs[:i]):
                diags.append(Diagnostic(file, 0, 0, "", f"document {i + 1} must not be empty"))
            continue
        if d.kind != "map":
            diags.append(
                Diagnostic(
                    file,
                    d.line,
                    d.col,
                    "",
                    f"document {i + 1} must be a mapping of DAG keys, got {'a list' if d.kind == 'seq' else 'a scalar'}",
                )
            )
            continue
        docs.append(d)
    if not docs and not diags:
        diags.append(
            Diagnostic(file, 0, 0, "", "yaml stream must contain at least one DAG document (the file is empty)")
        )
    if diags:
        raise SpecError(diags)

    detected, run_sub_dag_always = detect(docs)
    if dialect is Dialect.CLASSIC:
        run_sub_dag_always = True
    forced = dialect is not None
    dialect = dialect or detected
    ctx = Ctx(file, dialect, strict=strict, chain=chain or _chain_rule)
    ctx.forced = forced
    base = _load_base(base_config, ctx)
    local_names = _local_names(ctx, docs)

    def run_is_sub_dag(word: str) -> bool:
        if dialect is not Dialect.CLASSIC or not DAG_NAME.match(word):
            return False
        if run_sub_dag_always or word in local_names:
            return True
        return dag_exists(word) if dag_exists else False

    dags: list[Dag] = []
    for index, doc in enumerate(docs):
        if strict:
            _strict_shape(ctx, doc, index, exact=exact)
        merged = dagfile.merge_base(base, doc) if base is not None else doc
        dag = dagfile.build_dag(ctx, merged, index, run_is_sub_dag)
        if dag is not None:
            dags.append(dag)
    if ctx.failed or not dags:
        raise SpecError(ctx.diagnostics or [Diagnostic(file, 0, 0, "", "the file defines no DAG")])
    entry = dags[0]
    locals_ = {d.name: d for d in dags[1:]}
    entry = replace(entry, local_dags=locals_, base_config=base_config if base is not None else None)
    return Loaded(entry, ctx.diagnostics)


def _local_names(ctx: Ctx, docs: list[Node]) -> set[str]:
    names: set[str] = set()
    for i, doc in enumerate(docs[1:], start=2):
        n = doc.value.get("name")
        if n is None or n.kind != "scalar" or not str(n.value or "").strip():
            ctx.error(
                doc, "name", f"document {i} must define name (DAG at index {i - 1} must have a name in multi-DAG file)"
            )
            continue
        name = str(n.value).strip()
        if name in names:
            ctx.error(n, "name", f'DAG document name "{name}" must be unique')
        names.add(name)
    return names


def _strict_shape(ctx: Ctx, doc: Node, index: int, *, exact: bool) -> None:
    label = "entrypoint document" if index == 0 else f"document {index + 1}"
    if index == 0 and "name" in doc.value and ctx.dialect is Dialect.CURRENT:
        if exact:
            ctx.error(
                doc.keys["name"], "name", "entrypoint document must not define name (the file name is the DAG name)"
            )
        else:  # Dagu's loader and scheduler accept it, and so does every dagd command
            ctx.warn(
                doc.keys["name"],
                "name",
                "entrypoint document defines name: dagd runs the DAG under that name, as Dagu's scheduler does, "
                "but `dagu validate` 2.x rejects it (the file name is the DAG name); --strict applies that rule",
            )
    steps = doc.value.get("steps")
    if steps is not None and steps.kind == "map" and ctx.dialect is Dialect.CURRENT:
        ctx.error(steps, "steps", f"{label} steps must be a non-empty sequence, not a mapping")


def _load_base(path: str | None, ctx: Ctx) -> Node | None:
    if not path or not os.path.isfile(path):
        return None
    try:
        docs = _compose(read_text(path), path)
    except SpecError as exc:
        ctx.diagnostics.extend(exc.diagnostics)
        return None
    base = next((d for d in docs if d is not None), None)
    if base is not None and base.kind != "map":
        ctx.error(base, "", f"base config {path} must be a mapping")
        return None
    return base
