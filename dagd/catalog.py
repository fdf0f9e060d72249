"""The DAGs folder as the daemon sees it: every file loaded, the last good version kept.

`refresh()` re-reads files whose mtime or size changed (cheap polling: one stat per file), so
edits, additions and deletions are noticed without a restart. A file that stops validating
keeps its last good version scheduled and carries the error until it is fixed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dagd.spec import Dag, SpecError, load_file


@dataclass
class Entry:
    file: str
    dag: Dag | None = None  # the last version that loaded
    error: str | None = None  # why the current file does not load
    stamp: tuple[float, int] = (0.0, 0)
    warnings: list[str] = field(default_factory=list)


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
        """Reload what changed; returns the files whose state changed."""
        changed: list[str] = []
        seen = set()
        for path in self._files():
            seen.add(path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime, st.st_size)
            entry = self.entries.get(path)
            if entry is not None and entry.stamp == stamp:
                continue
            entry = entry or Entry(path)
            entry.stamp = stamp
            try:
                loaded = load_file(path, base_config=self.base_config, dag_exists=self.has)
                entry.dag, entry.error = loaded.dag, None
                entry.warnings = [d.render() for d in loaded.diagnostics]
            except SpecError as exc:
                entry.error = str(exc)
            self.entries[path] = entry
            changed.append(path)
        for path in list(self.entries):
            if path not in seen:
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
        """Loaded DAGs by name (files that never loaded are listed under their file stem)."""
        if self._by_name is None:
            out: dict[str, Entry] = {}
            for path, entry in self.entries.items():
                name = entry.dag.name if entry.dag else os.path.splitext(os.path.basename(path))[0]
                out[name] = entry
            self._by_name = out
        return dict(self._by_name)

    def find(self, name: str) -> Entry | None:
        self.dags()
        return self._by_name.get(name) if self._by_name is not None else None
