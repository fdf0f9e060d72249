"""Secret values never leave dagd: replacing them in values and in growing logs (pure functions).

A step writes its log itself, secrets included, while it runs (dagd masks the file on disk when
the step ends). Readers of a live log therefore get masked slices: `masked_slice` holds back
the bytes that could be the start of a secret until the next read can see the whole of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MASK = "*****"


def mask_text(text: str, secrets: list[str]) -> str:
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def mask_value(value: Any, mask: Callable[[str], str]) -> Any:
    """Every string inside a JSON-like value (dicts, lists, tuples) passed through `mask`."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_value(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v, mask) for v in value]
    return value


def masked_slice(raw: bytes, secrets: list[str], *, final: bool) -> tuple[bytes, int]:
    """(masked bytes, how many bytes of `raw` they stand for). Unless `final`, the last bytes
    that might begin a secret are left for the next read; an occurrence is never cut in two."""
    wanted = [s.encode() for s in secrets if s]
    if not wanted:
        return raw, len(raw)
    longest = max(len(s) for s in wanted)
    cut = len(raw) if final else max(0, len(raw) - (longest - 1))
    moved = True
    while moved:  # an occurrence that straddles the cut moves the cut past its end
        moved = False
        for s in wanted:
            i = raw.find(s, max(0, cut - len(s) + 1))
            if i != -1 and i < cut < i + len(s):
                cut, moved = i + len(s), True
    part = raw[:cut]
    for s in sorted(wanted, key=len, reverse=True):
        part = part.replace(s, MASK.encode())
    return part, cut
