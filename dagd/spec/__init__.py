"""Dagu DAG files → immutable models, with located errors (see docs/compat.md)."""

from dagd.spec.errors import Diagnostic, Severity, SpecError
from dagd.spec.load import Loaded, load_file, load_text
from dagd.spec.model import Dag, DagType, Dialect, Step, StepKind

__all__ = [
    "Dag",
    "DagType",
    "Diagnostic",
    "Dialect",
    "Loaded",
    "Severity",
    "SpecError",
    "Step",
    "StepKind",
    "load_file",
    "load_text",
]
