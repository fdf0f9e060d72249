"""Diagnostics of the spec loader: errors that reject a file, warnings and notices that do not."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a DAG file, located as precisely as YAML allows.

    `key` is the path of the offending key (`steps[1].retry_policy.limit`), `line`/`col` are
    1-based (0 when unknown), `message` says what is wrong and what is allowed.
    """

    file: str
    line: int
    col: int
    key: str
    message: str
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        """`file:line:col: key: message` (the CLI form); warnings and notices say so."""
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}" if self.col else f":{self.line}"
        prefix = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}: {prefix}{key}{self.message}"

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.col,
            "key": self.key,
            "message": self.message,
            "severity": self.severity.value,
        }


class SpecError(Exception):
    """A DAG file was rejected; `diagnostics` holds every error found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = [d for d in diagnostics if d.severity is Severity.ERROR]
        self.warnings = [d for d in diagnostics if d.severity is not Severity.ERROR]
        super().__init__("\n".join(d.render() for d in self.diagnostics))
