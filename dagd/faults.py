"""Named fault points for the tests that attack (DESIGN: crash matrix and fault injection).

`DAGD_FAULT=point[:target][,point[:target]…]` makes `hit(point, …)` fail where dagd would meet
that fault for real — an OSError where a folder or file is made, an SQLite error where the store
writes, a bug (RuntimeError) in a handler — only for the named DAG or step when a target is given.
`DAGD_FAULT=kill:point` kills dagd itself (SIGKILL) there: the crash matrix. Unset, `hit` costs one
dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3


def _fault(point: str) -> Exception:
    if point == "log_folder":
        return OSError(errno.EACCES, f"Permission denied (fault injected at {point})")
    if point == "work_folder":
        return OSError(errno.EROFS, f"Read-only file system (fault injected at {point})")
    if point == "spawn":
        return OSError(errno.ENOEXEC, f"Exec format error (fault injected at {point})")
    if point == "output_file":
        return OSError(errno.ENOSPC, f"No space left on device (fault injected at {point})")
    if point in ("run_cgroup", "step_cgroup"):
        return OSError(errno.EAGAIN, f"Resource temporarily unavailable (fault injected at {point})")
    if point == "database_write":
        return sqlite3.OperationalError(f"disk I/O error (fault injected at {point})")
    return RuntimeError(f"a bug (fault injected at {point})")


def hit(point: str, *targets: str | None) -> None:
    """Fail here if DAGD_FAULT names this point (and one of `targets`, when it names one)."""
    spec = os.environ.get("DAGD_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        name, _, target = item.strip().partition(":")
        if name == "kill" and target == point:
            os.kill(os.getpid(), signal.SIGKILL)
        if name == point and (not target or target in targets):
            raise _fault(point)
