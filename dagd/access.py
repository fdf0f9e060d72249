"""Who may drive dagd, one rule for every transport, and the audit line of what they did.

The rule: root, dagd's own user and members of group `dagd` (a user daemon: its owner alone)
may do everything; everyone else nothing. The control socket learns the caller's
uid from SO_PEERCRED; the HTTP server learns it from the kernel's socket table for loopback
connections (dagd.peers), or from credentials (basic user, bearer token, login session).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
from dataclasses import dataclass

NOTICE = 25  # between INFO and WARNING: journald priority 5
logging.addLevelName(NOTICE, "NOTICE")
audit_log = logging.getLogger("dagd.audit")

_DEPTH_ESCAPES = re.compile(rb"\\.", re.S)
_DEPTH_STRINGS = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


@dataclass(frozen=True)
class Rule:
    """Who may use dagd: root and dagd's own user always; members of `group` too (the system
    daemon's `dagd`; None for a user daemon, which only its owner may use)."""

    group: str | None = "dagd"

    def allows(self, uid: int, gid: int = -1) -> bool:
        if uid < 0:
            return False
        if uid in (0, os.geteuid()):
            return True
        if self.group is None:
            return False
        try:
            group = grp.getgrnam(self.group)
        except KeyError:
            return False
        if gid == group.gr_gid:
            return True
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            return False
        return user.pw_gid == group.gr_gid or user.pw_name in group.gr_mem

    def describe(self) -> str:
        return "root, dagd's own user" + (f" and members of group {self.group}" if self.group else "")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True)
class Principal:
    """Who made a request: a local uid (socket peer) or an HTTP credential."""

    kind: str  # "uid" | "basic" | "token" | "session"
    name: str  # user name, basic user, token id
    uid: int | None = None

    def describe(self) -> str:
        if self.kind == "uid":
            return f"uid={self.uid} ({self.name})"
        if self.kind == "session":
            return f"session of {self.name}" + (f" (uid={self.uid})" if self.uid is not None else "")
        return f"{self.kind} {self.name}"


def local(uid: int) -> Principal:
    return Principal("uid", user_name(uid), uid)


def audit(who: Principal, action: str, via: str, *, dag: str | None = None, run_id: str | None = None) -> None:
    """One line at notice priority per mutating call: who, what, on which DAG and run."""
    what = action + (f" {dag}" if dag else "") + (f" run {run_id}" if run_id else "")
    fields = {"DAGD_USER": who.name, "DAGD_ACTION": action, "DAGD_VIA": via}
    if who.uid is not None:
        fields["DAGD_UID"] = str(who.uid)
    if dag:
        fields["DAGD_DAG"] = dag
    if run_id:
        fields["DAGD_RUN_ID"] = run_id
    audit_log.log(NOTICE, "%s by %s via %s", what, who.describe(), via, extra={"journal": fields})


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, found without parsing it
    (a parser would recurse): strings are blanked out, then the brackets are counted."""
    brackets = _DEPTH_STRINGS.sub(b"", _DEPTH_ESCAPES.sub(b"", data)).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    depth = 0
    for ch in brackets:
        if ch in (91, 123):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
