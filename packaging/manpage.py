"""Man pages for dagd(8) and dagctl(1), rendered from the click commands' own help."""

from __future__ import annotations

import datetime as dt
import sys

import click

from dagd import __version__


def _esc(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        record = param.get_help_record(ctx)
        if record:
            out += [".TP", f"\\fB{_esc(record[0])}\\fR", _esc(record[1])]
    return out


def render(cmd: click.Command, name: str, section: int, summary: str, extra: str) -> str:
    ctx = click.Context(cmd, info_name=name)
    date = dt.date.today().strftime("%Y-%m-%d")
    out = [
        f'.TH {name.upper()} {section} "{date}" "{name} {__version__}" "dagd manual"',
        ".SH NAME",
        f"{name} \\- {summary}",
        ".SH SYNOPSIS",
        f"\\fB{name}\\fR {_esc(' '.join(cmd.collect_usage_pieces(ctx)))}",
        ".SH DESCRIPTION",
        _esc(cmd.help or ""),
        ".SH OPTIONS",
        *_options(cmd, ctx),
    ]
    if isinstance(cmd, click.Group):
        out.append(".SH COMMANDS")
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=sub_name, parent=ctx)
            out += [
                ".SS " + f"{name} {sub_name} {_esc(' '.join(sub.collect_usage_pieces(sub_ctx)))}",
                _esc(sub.help or sub.short_help or ""),
                *_options(sub, sub_ctx),
            ]
    out += [".SH FILES", _esc(extra), ".SH SEE ALSO", "dagd(8), dagctl(1), systemd.service(5)"]
    return "\n".join(out) + "\n"


FILES = """/etc/dagd/config.yaml    settings (see the comments in it)
.br
/etc/dagd/dags/          DAG files (Dagu's YAML)
.br
/var/lib/dagd/           history database and step logs
.br
/run/dagd/dagd.sock      control socket (dagctl)"""


def main() -> None:
    from dagctl.cli import main as dagctl_cli
    from dagd.daemon import cli as dagd_cli

    which = sys.argv[1]
    if which == "dagd":
        sys.stdout.write(render(dagd_cli, "dagd", 8, "systemd-native workflow daemon for Dagu DAGs", FILES))
    else:
        sys.stdout.write(render(dagctl_cli, "dagctl", 1, "drive dagd and run Dagu DAGs", FILES))


if __name__ == "__main__":
    main()
