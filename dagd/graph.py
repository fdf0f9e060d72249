"""Step dependencies as a graph: cycles named, execution levels, ancestors.

Pure functions over (name → dependency names); the spec loader and the engine share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as [a, b, …, a], or None. Iterative, so deep chains are fine."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in deps:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            children = [d for d in deps.get(node, ()) if d in deps]
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def levels(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Steps grouped by the earliest wave they can start in (Kahn order, source order kept)."""
    remaining = {n: [d for d in ds if d in deps] for n, ds in deps.items()}
    done: set[str] = set()
    out: list[list[str]] = []
    while remaining:
        wave = [n for n, ds in remaining.items() if all(d in done for d in ds)]
        if not wave:  # a cycle: callers check find_cycle first
            out.append(list(remaining))
            break
        out.append(wave)
        done.update(wave)
        for n in wave:
            del remaining[n]
    return out


def ancestors(deps: Mapping[str, Sequence[str]], name: str) -> set[str]:
    """Every step `name` depends on, directly or transitively."""
    seen: set[str] = set()
    todo = list(deps.get(name, ()))
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(deps.get(d, ()))
    return seen
