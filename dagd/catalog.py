"""The DAGs folder as the daemon sees it: every file loaded, the last good version kept.

`refresh()` re-reads files whose mtime or size changed (cheap polling: one stat per file), so
edits, additions and deletions are noticed without a restart. A file that stops validating
keeps its last good version scheduled and carries the error until it is fixed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dagd.spec import Dag, SpecError, load_file
from dagd.spec.load import Loaded


@dataclass
class Entry:
    file: str
    dag: Dag | None = None  # the last version that loaded
    error: str | None = None  # why the current file does not load
    stamp: tuple[float, int] = (0.0, 0)
    warnings: list[str] = field(default_factory=list)
    conflict: str | None = None  # another file declares the same DAG name

    @property
    def usable(self) -> Dag | None:
        """The DAG to schedule and run: none while its name is ambiguous."""
        return None if self.conflict else self.dag

    @property
    def problem(self) -> str | None:
        """What to show the operator: a name conflict, or why the file does not load."""
        return self.conflict or self.error


@dataclass(frozen=True)
class Scan:
    """What one look at the folder found: every file's stamp, and the files that changed, loaded."""

    stamps: dict[str, tuple[float, int]]
    loaded: dict[str, Loaded | SpecError]


def _exists(folder: str, name: str, stamps: dict[str, tuple[float, int]]) -> bool:
    return any(os.path.splitext(os.path.basename(p))[0] == name for p in stamps) or any(
        os.path.exists(os.path.join(folder, name + ext)) for ext in (".yaml", ".yml")
    )


class Catalog:
    def __init__(self, folder: str, base_config: str | None = None) -> None:
        self.folder = folder
        self.base_config = base_config
        self.entries: dict[str, Entry] = {}  # by file path
        self._by_name: dict[str, Entry] | None = None  # dags(), rebuilt after a refresh changed something

    def _files(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            return []
        return [
            os.path.join(self.folder, n)
            for n in names
            if n.endswith((".yaml", ".yml")) and not n.startswith(".") and n not in ("base.yaml", "base.yml")
        ]

    def refresh(self) -> list[str]:
        """Reload what changed, here and now; returns the files whose state changed."""
        return self.apply(self.scan(self.stamps()))

    def stamps(self) -> dict[str, tuple[float, int]]:
        """What the catalog knows of each file, for a scan in another thread."""
        return {path: entry.stamp for path, entry in self.entries.items()}

    def scan(self, known: dict[str, tuple[float, int]]) -> Scan:
        """Stat every file and load those that changed since `known`, touching nothing of the
        catalog's own state: it runs in a worker thread while the event loop reads the catalog."""
        loaded: dict[str, Loaded | SpecError] = {}
        stamps: dict[str, tuple[float, int]] = {}
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime, st.st_size)
            stamps[path] = stamp
            if known.get(path) == stamp:
                continue
            try:
                loaded[path] = load_file(
                    path, base_config=self.base_config, dag_exists=lambda n: _exists(self.folder, n, stamps)
                )
            except SpecError as exc:
                loaded[path] = exc
        return Scan(stamps, loaded)

    def apply(self, scan: Scan) -> list[str]:
        """What a scan found, applied on the event loop; returns the files whose state changed."""
        changed: list[str] = []
        for path, result in scan.loaded.items():
            entry = self.entries.get(path) or Entry(path)
            entry.stamp = scan.stamps[path]
            if isinstance(result, SpecError):
                entry.error = str(result)
            else:
                entry.dag, entry.error = result.dag, None
                entry.warnings = [d.render() for d in result.diagnostics]
            self.entries[path] = entry
            changed.append(path)
        for path in list(self.entries):
            if path not in scan.stamps:
                del self.entries[path]
                changed.append(path)
        if changed:
            self._by_name = None
        return changed

    def has(self, name: str) -> bool:
        return any(os.path.splitext(os.path.basename(p))[0] == name for p in self.entries) or any(
            os.path.exists(os.path.join(self.folder, name + ext)) for ext in (".yaml", ".yml")
        )

    def dags(self) -> dict[str, Entry]:
        """Loaded DAGs by name (files that never loaded are listed under their file stem). Two
        files declaring one name are both listed, each under its file name, with a conflict
        that keeps either from running until one is renamed."""
        if self._by_name is None:
            by_name: dict[str, list[Entry]] = {}
            for path, entry in self.entries.items():
                name = entry.dag.name if entry.dag else os.path.splitext(os.path.basename(path))[0]
                by_name.setdefault(name, []).append(entry)
            out: dict[str, Entry] = {}
            for name, entries in by_name.items():
                if len(entries) == 1:
                    entries[0].conflict = None
                    out[name] = entries[0]
                    continue
                for entry in entries:
                    others = ", ".join(os.path.basename(e.file) for e in entries if e is not entry)
                    entry.conflict = f"duplicate DAG name {name!r}: {others} declares it too; rename one"
                    stem = os.path.splitext(os.path.basename(entry.file))[0]
                    out[stem if stem not in out and stem not in by_name else os.path.basename(entry.file)] = entry
            self._by_name = out
        return dict(self._by_name)

    def problems(self) -> dict[str, str]:
        """Every file that does not load or whose DAG name is ambiguous, with why."""
        self.dags()
        return {e.file: e.problem for e in self.entries.values() if e.problem}

    def find(self, name: str) -> Entry | None:
        self.dags()
        if self._by_name is None:
            return None
        entry = self._by_name.get(name)
        if entry is None:  # an ambiguous name is found under it too, to say why it cannot run
            entry = next((e for e in self._by_name.values() if e.conflict and e.dag and e.dag.name == name), None)
        return entry
