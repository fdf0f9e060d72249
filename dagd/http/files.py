"""Files behind the API: DAG files written atomically, step logs read in slices, the built UI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from litestar import Response

from dagd.http import models as m


def write_atomically(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".dagd-edit-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def log(
    text: str, tail: int | None, head: int | None = None, offset: int | None = None, limit: int | None = None
) -> m.Log:
    """Dagu's log paging: `tail` last lines, `head` first lines, or `offset` (1-based) + `limit`."""
    lines = text.splitlines()
    total = len(lines)
    if tail:
        lines = lines[-tail:]
    elif head:
        lines = lines[:head]
    elif offset or limit:
        start = (offset or 1) - 1
        lines = lines[start : start + limit] if limit else lines[start:]
    return {
        "content": "\n".join(lines),
        "lineCount": len(lines),
        "totalLines": total,
        "hasMore": len(lines) < total,
        "isEstimate": False,
    }


UI_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


def ui_file(root: Path, rel: str) -> Response[bytes]:
    """A file of the built UI under `root` (never outside it), else index.html for client routes."""
    index = root / "index.html"
    if not index.is_file():
        body = b"dagd's web UI is not built: run `make web` (or `npm ci && npm run build` in web/)\n"
        return Response(body, status_code=404, media_type="text/plain; charset=utf-8")
    target = (root / rel).resolve() if rel else index
    if not target.is_relative_to(root) or not target.is_file():
        target = index
    immutable = target.parent.name == "assets"  # content-hashed names
    headers = {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"}
    media = UI_TYPES.get(target.suffix, "application/octet-stream")
    return Response(target.read_bytes(), media_type=media, headers=headers)
