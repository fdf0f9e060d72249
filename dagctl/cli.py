"""dagctl: the command line of dagd.

Kept light on purpose (click + the spec loader only; never trio or litestar) so that every
invocation starts fast.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from dagctl import base
from dagctl.base import CLASSIC_CHAIN, CONTEXT, DIALECT, ExitWith, load
from dagd import __version__

if TYPE_CHECKING:
    pass


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="dagctl")
@CLASSIC_CHAIN
def main(classic_chain: str | None) -> None:
    """Control dagd and work with Dagu-format DAG files.

    \b
    dagctl validate nightly.yaml      check a DAG file; errors as file:line:col: key: message
    dagctl dry nightly.yaml -- K=V    show the plan without running anything
    """
    base.chain_choice = classic_chain


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every finding.")
@click.option("--show-unresolved", is_flag=True, help="Also list references that only resolve at run time.")
@click.option("--verbose", "-v", is_flag=True, help="Name the Dagu dialect chosen for each file.")
@click.option(
    "--strict",
    is_flag=True,
    help="Apply `dagu validate` 2.x's rules exactly: an entrypoint `name:` in a current file is an error.",
)
@DIALECT
def validate(
    files: tuple[str, ...], as_json: bool, show_unresolved: bool, verbose: bool, strict: bool, dialect: str
) -> None:
    """Check DAG files: errors and warnings on stderr; exit 0 when every file is valid, else 1."""
    from dagd.spec import Diagnostic, Severity, SpecError
    from dagd.spec.references import unresolved

    failed = False
    report: list[dict[str, Any]] = []
    for path in files:
        findings: list[Diagnostic] = []
        chosen = None
        try:
            loaded = load(path, strict=True, exact=strict, dialect=dialect)
            chosen = loaded.dag.dialect.value
            findings = loaded.diagnostics + unresolved(loaded.dag)
            if not show_unresolved:
                findings = [d for d in findings if d.severity is not Severity.NOTICE]
            if verbose and not as_json:
                rule = loaded.dag.chain_rule
                how = (
                    f"; explicit depends {'replace' if rule.value == 'replace' else 'add to'} the previous step"
                    if rule
                    else ""
                )
                click.echo(
                    f"{path}: dialect {chosen} ({loaded.dag.type.value} DAG, {len(loaded.dag.steps)} steps{how})",
                    err=True,
                )
        except SpecError as exc:
            failed = True
            findings = exc.diagnostics + exc.warnings
        report.append(
            {
                "file": path,
                "valid": not any(d.severity is Severity.ERROR for d in findings),
                "dialect": chosen,
                "chainRule": loaded.dag.chain_rule.value if chosen and loaded.dag.chain_rule else None,
                "diagnostics": [d.as_json() for d in findings],
            }
        )
        if not as_json:
            for d in findings:
                click.echo(d.render(), err=True)
    if as_json:
        click.echo(json.dumps({"valid": not failed, "files": report}, indent=2))
    if failed:
        raise ExitWith(1)


@main.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("params", nargs=-1)
@click.option("--params", "params_opt", default=None, help='Parameters as Dagu takes them: "K=V K2=V2" or positional.')
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def dry(file: str, params: tuple[str, ...], params_opt: str | None, as_json: bool) -> None:
    """Show what a run would do: steps in order, with params and commands resolved. Runs nothing."""
    from dagd.plan import make_plan, render_plan
    from dagd.spec import SpecError

    try:
        loaded = load(file)
    except SpecError as exc:
        for d in exc.diagnostics:
            click.echo(d.render(), err=True)
        raise ExitWith(1) from None
    for d in loaded.diagnostics:
        click.echo(d.render(), err=True)
    try:
        plan = make_plan(loaded.dag, list(params), params_opt)
    except ValueError as exc:
        click.echo(f"{file}: params: {exc}", err=True)
        raise ExitWith(1) from None
    if as_json:
        click.echo(json.dumps(plan, indent=2))
    else:
        click.echo(render_plan(plan))


from dagctl import daemonctl, runs  # noqa: E402  (the commands register below)

for command in (
    runs.run_cmd,
    runs.status,
    runs.history,
    runs.logs,
    runs.stop,
    runs.retry,
    daemonctl.list_cmd,
    daemonctl.enqueue,
    daemonctl.dequeue,
    daemonctl.suspend,
    daemonctl.resume,
    daemonctl.reload,
    daemonctl.prepare_stop,
    daemonctl.daemon,
    daemonctl.nodes,
    daemonctl.ui,
):
    main.add_command(command)


def run() -> None:  # console-script entry point
    from dagctl.client import DaemonUnavailable

    try:
        main(prog_name="dagctl")
    except DaemonUnavailable as exc:  # the daemon went away in the middle of a command
        click.echo(f"dagctl: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
