"""`${id.stdout}`, `${id.exit_code}`, `${id.outputs.X}`…: what a step may say of an earlier one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from dagd.engine.step import StepResult
from dagd.spec.model import Step


class StepProps(Mapping[str, Mapping[str, str]]):
    """The properties of the finished steps with an id, computed when a reference names one and
    cached per result, so a step's scope costs O(1) instead of O(steps)."""

    def __init__(self, steps: Sequence[Step], results: Mapping[str, StepResult]) -> None:
        self.steps = steps
        self.results = results  # the run's live results: a step that finishes becomes visible
        self.by_id = {s.id: s for s in steps if s.id}
        self._cache: dict[str, tuple[tuple[object, ...], dict[str, str]]] = {}

    def of(self, s: Step) -> dict[str, str] | None:
        r = self.results[s.name]
        if not (s.id and r.status.done):
            return None
        key = (r.status, r.exit_code, r.output_value, r.stdout_path, r.stderr_path, r.attempts, r.finished_at)
        hit = self._cache.get(s.name)
        if hit is not None and hit[0] == key:
            return hit[1]
        p = {f"outputs.{k}": v for k, v in {**r.outputs, **r.published}.items()}
        p |= {
            "stdout": r.stdout_path,
            "stderr": r.stderr_path,
            "exit_code": str(r.exit_code if r.exit_code is not None else ""),
            "exitCode": str(r.exit_code if r.exit_code is not None else ""),
        }
        if r.output_value is not None:
            p["output"] = r.output_value
        self._cache[s.name] = (key, p)
        return p

    def __getitem__(self, key: str) -> Mapping[str, str]:
        step = self.by_id.get(key)
        props = self.of(step) if step is not None else None
        if props is None:
            raise KeyError(key)
        return props

    def __iter__(self) -> Iterator[str]:
        return (s.id for s in self.steps if s.id and self.of(s) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)
