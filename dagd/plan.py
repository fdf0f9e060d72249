"""The plan of a run without running it (`dagctl dry`): levels, params, resolved commands."""

from __future__ import annotations

from typing import Any

from dagd.engine.resolve import Scope, resolve
from dagd.expand import resolve_params
from dagd.graph import levels
from dagd.spec.model import Dag, Step, StepKind


def make_plan(dag: Dag, overrides: list[str], param_string: str | None = None) -> dict[str, Any]:
    named, positional = resolve_params(dag, overrides, param_string)
    consts: dict[str, str] = {}
    for k, v in dag.consts:
        consts[k] = resolve(v, Scope(consts=consts))
    env = dict(named)
    scope = Scope(env=env, params=named, positional=positional, consts=consts)
    for k, v in dag.env:  # top to bottom: later entries see earlier ones
        env[k] = resolve(v, scope)

    def expand(text: str) -> str:
        return resolve(text, scope, shell_owned=True)

    def describe(s: Step) -> dict[str, Any]:
        d: dict[str, Any] = {"name": s.name, "kind": s.kind.value, "depends": list(s.depends)}
        if s.id:
            d["id"] = s.id
        if s.commands:
            d["commands"] = [expand(c) for c in s.commands]
        if s.script is not None:
            d["script"] = expand(s.script)
        if s.interpreter:
            d["interpreter"] = list(s.interpreter)
        if s.sub_dag is not None:
            d["dag"] = expand(s.sub_dag.dag)
        if s.action:
            d["action"] = s.action
        if s.kind is StepKind.FOREACH and s.foreach is not None:
            d["foreach"] = [b.name for b in s.foreach.steps]
        if s.preconditions:
            d["preconditions"] = [p.condition or p.eval for p in s.preconditions]
        return d

    by_name = {s.name: s for s in dag.steps}
    waves = levels({s.name: list(s.depends) for s in dag.steps})
    return {
        "dag": dag.name,
        "file": dag.file,
        "dialect": dag.dialect.value,
        "type": dag.type.value,
        "chainRule": dag.chain_rule.value if dag.chain_rule else None,
        "params": {"named": named, "positional": positional},
        "levels": [[describe(by_name[n]) for n in wave] for wave in waves],
        "handlers": {e: describe(h) for e, h in dag.handlers.items()},
    }


def render_plan(plan: dict[str, Any]) -> str:
    rule = {
        "replace": ", explicit depends replace the previous step",
        "additive": ", explicit depends add to the previous step",
    }
    how = rule.get(plan.get("chainRule") or "", "")
    lines = [f"DAG {plan['dag']} ({plan['dialect']} dialect, {plan['type']}{how}) — nothing is executed"]
    p = plan["params"]
    if p["named"] or p["positional"]:
        shown = [f"${i + 1}={v}" for i, v in enumerate(p["positional"])]
        shown += [f"{k}={v}" for k, v in p["named"].items()]
        lines.append("params: " + " ".join(shown))
    for i, wave in enumerate(plan["levels"], start=1):
        lines.append(f"level {i}:")
        for s in wave:
            after = f" (after {', '.join(s['depends'])})" if s["depends"] else ""
            lines.append(f"  {s['name']}{after}")
            for c in s.get("commands", []):
                lines.append(f"    $ {c}")
            if "script" in s:
                prog = " ".join(s.get("interpreter", [])) or "shell"
                lines.append(f"    script ({prog}):")
                lines.extend(f"      {line}" for line in s["script"].splitlines())
            if "dag" in s:
                lines.append(f"    -> sub-DAG {s['dag']}")
            if "action" in s and "dag" not in s:
                lines.append(f"    action {s['action']}")
    for event, h in plan["handlers"].items():
        lines.append(f"on {event}: {h['name']}")
        for c in h.get("commands", []):
            lines.append(f"    $ {c}")
    return "\n".join(lines)
