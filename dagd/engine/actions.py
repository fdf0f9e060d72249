"""Builtin actions dagd does itself, in a worker thread (no shell, no process): `file.stat` /
`read` / `write` / `copy` / `move` / `delete` / `mkdir` / `list`, `archive.create` / `extract` /
`list`, `log.write`, `noop`.

Each takes the step's resolved `with:` and its working directory (relative paths are its), writes
what Dagu writes to the step's stdout — one JSON object per operation (`{"operation": "copy",
"source": …, "copied": true, "files": 3, …}`), a read's raw content — and raises StepFailed with
the reason on bad input. Dagu's defaults: a write creates a new file with mode 0600 and refuses to
replace one unless `overwrite: true` (then atomically); `create_dirs` is off; `dry_run` reports
what would happen and changes nothing; a directory is deleted or copied only with `recursive`."""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

from dagd.engine.step import StepFailed, reject_unknown
from dagd.spec.executors import ARCHIVE_KEYS, FILE_KEYS

FILE_OPS = ("stat", "read", "write", "copy", "move", "delete", "mkdir", "list")
ARCHIVE_OPS = ("create", "extract", "list")
SUPPORTED = frozenset(
    {f"file.{op}" for op in FILE_OPS} | {f"archive.{op}" for op in ARCHIVE_OPS} | {"log.write", "noop"}
)


def operation(action: str, commands: tuple[str, ...]) -> str:
    """The action, with Dagu 1.x's `type: file` / `archive` naming its operation as the command."""
    family = action.split(".")[0]
    if family in ("file", "archive") and len(commands) == 1:
        op = commands[0].strip().lower()
        if op in (FILE_OPS if family == "file" else ARCHIVE_OPS):
            return f"{family}.{op}"
    return action


def _path(config: Mapping[str, Any], cwd: str, key: str = "path") -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise StepFailed(f"with.{key} is required (a path)")
    value = os.path.expanduser(value)
    return os.path.normpath(value if os.path.isabs(value) else os.path.join(cwd, value))


def _emit(out: BinaryIO, result: Mapping[str, Any]) -> None:
    out.write((json.dumps({k: v for k, v in result.items() if v is not None}, separators=(",", ":")) + "\n").encode())


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def _kind(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "other"


def _info(path: str, st: os.stat_result, shown: str | None = None) -> dict[str, Any]:
    return {
        "path": shown or path,
        "type": _kind(st),
        "size": st.st_size,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "modTime": _when(st.st_mtime),
        "isDir": stat.S_ISDIR(st.st_mode),
        "isRegular": stat.S_ISREG(st.st_mode),
        "isSymlink": stat.S_ISLNK(st.st_mode),
    }


def _mode(config: Mapping[str, Any], default: int) -> int:
    text = config.get("mode")
    if text is None or text == "":
        return default
    try:
        return int(str(text).removeprefix("0o").removeprefix("0O"), 8)
    except ValueError:
        raise StepFailed(f"with.mode must be an octal mode such as 0644, got {text!r}") from None


def run_action(action: str, config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    if action == "noop":
        return
    if action == "log.write":
        out.write(f"{config.get('message', '')}\n".encode())
        return
    family, _, op = action.partition(".")
    if family == "file":
        reject_unknown(action, config, FILE_KEYS)
        try:
            FILE[op](config, cwd, out)
        except OSError as exc:
            raise StepFailed(f"{action}: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}") from None
    elif family == "archive":
        reject_unknown(action, config, ARCHIVE_KEYS)
        try:
            ARCHIVE[op](config, cwd, out)
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise StepFailed(f"{action}: {exc}") from None
    else:  # pragma: no cover - callers check SUPPORTED first
        raise StepFailed(f"step type {action} is not supported by dagd yet")


# ---- file.* ----------------------------------------------------------------------------------


def _stat(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    path = _path(config, cwd)
    try:
        st = os.stat(path) if config.get("follow_symlinks") else os.lstat(path)
    except FileNotFoundError:
        if config.get("missing_ok"):
            _emit(out, {"operation": "stat", "path": path, "exists": False})
            return
        raise StepFailed(f"file.stat {path}: no such file or directory") from None
    _emit(out, {"operation": "stat", "exists": True, **_info(path, st)})


def _read(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    path = _path(config, cwd)
    limit = int(config.get("max_bytes") or 0)
    fmt = str(config.get("format") or "raw")
    if fmt not in ("raw", "json"):
        raise StepFailed(f"file.read: format is raw or json, got {fmt!r}")
    size = os.path.getsize(path)
    if limit and size > limit:
        raise StepFailed(f"file.read {path}: {size} bytes is more than max_bytes ({limit})")
    with open(path, "rb") as fh:
        if fmt == "json":
            data = fh.read()
            _emit(
                out, {"operation": "read", "path": path, "bytes": len(data), "content": data.decode(errors="replace")}
            )
        else:
            shutil.copyfileobj(fh, out)


def _write(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    path = _path(config, cwd)
    content = config.get("content", "")
    data = (content if isinstance(content, str) else json.dumps(content)).encode()
    mode = _mode(config, 0o600)
    if config.get("dry_run"):
        _emit(out, {"operation": "write", "path": path, "bytes": len(data), "dryRun": True, "created": False})
        return
    parent = os.path.dirname(path)
    if config.get("create_dirs"):
        os.makedirs(parent, mode=0o750, exist_ok=True)
    if not config.get("overwrite"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise StepFailed(f"file.write {path}: the file exists (overwrite: true replaces it)") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    elif config.get("atomic", True):
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".dagd-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
            fh.write(data)
    _emit(out, {"operation": "write", "path": path, "bytes": len(data), "created": True})


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Everything under root (not root), top-down, symlinks not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            p = os.path.join(dirpath, name)
            yield p, os.lstat(p)


def _copy(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    source, dest = _path(config, cwd, "source"), _path(config, cwd, "destination")
    if os.path.realpath(source) == os.path.realpath(dest):
        raise StepFailed(f"file.copy {source} to {dest}: source and destination must differ")
    if config.get("dry_run"):
        _emit(out, {"operation": "copy", "source": source, "destination": dest, "dryRun": True, "copied": False})
        return
    st = os.stat(source) if config.get("follow_symlinks") else os.lstat(source)
    if os.path.lexists(dest) and not config.get("overwrite"):
        raise StepFailed(f"file.copy {source} to {dest}: the destination exists (overwrite: true replaces it)")
    if config.get("create_dirs"):
        os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
    files = dirs = size = 0
    if stat.S_ISDIR(st.st_mode):
        if not config.get("recursive"):
            raise StepFailed(f"file.copy {source}: a directory is copied only with recursive: true")
        if dest.startswith(os.path.realpath(source) + os.sep):
            raise StepFailed(f"file.copy {source} to {dest}: the destination is inside the source")
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=bool(config.get("overwrite")))
        dirs = 1
        for _, s in _walk(dest):
            if stat.S_ISDIR(s.st_mode):
                dirs += 1
            else:
                files += 1
                size += s.st_size
    else:
        shutil.copy2(source, dest, follow_symlinks=bool(config.get("follow_symlinks")))
        files, size = 1, st.st_size
    _emit(
        out,
        {"operation": "copy", "source": source, "destination": dest, "files": files, "directories": dirs or None}
        | {"bytes": size, "copied": True},
    )


def _move(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    source, dest = _path(config, cwd, "source"), _path(config, cwd, "destination")
    if os.path.realpath(source) == os.path.realpath(dest):
        raise StepFailed(f"file.move {source} to {dest}: source and destination must differ")
    if config.get("dry_run"):
        _emit(out, {"operation": "move", "source": source, "destination": dest, "dryRun": True, "moved": False})
        return
    if config.get("create_dirs"):
        os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
    src_dir = stat.S_ISDIR(os.lstat(source).st_mode)
    if os.path.lexists(dest):
        if not config.get("overwrite"):
            raise StepFailed(f"file.move {source} to {dest}: the destination exists (overwrite: true replaces it)")
        if os.path.isdir(dest) and not os.path.islink(dest):
            if not src_dir:
                raise StepFailed(f"file.move {source} to {dest}: a file cannot replace a directory")
            shutil.rmtree(dest)
    shutil.move(source, dest)  # a rename, or copy and delete across file systems
    _emit(out, {"operation": "move", "source": source, "destination": dest, "moved": True})


def _delete(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    path = _path(config, cwd)
    if os.path.realpath(path) == "/":
        raise StepFailed(f"file.delete {path}: refusing to delete the filesystem root")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if config.get("missing_ok"):
            _emit(out, {"operation": "delete", "path": path, "deleted": False})
            return
        raise StepFailed(f"file.delete {path}: no such file or directory") from None
    if stat.S_ISDIR(st.st_mode) and not config.get("recursive"):
        raise StepFailed(f"file.delete {path}: recursive: true is required to delete a directory")
    if config.get("dry_run"):
        _emit(out, {"operation": "delete", "path": path, "dryRun": True, "deleted": False})
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    _emit(out, {"operation": "delete", "path": path, "deleted": True})


def _mkdir(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    path = _path(config, cwd)
    existed = os.path.isdir(path)
    if config.get("dry_run"):
        _emit(out, {"operation": "mkdir", "path": path, "dryRun": True, "created": False})
        return
    os.makedirs(path, mode=_mode(config, 0o750), exist_ok=True)
    _emit(out, {"operation": "mkdir", "path": path, "created": not existed})


def _list(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    root = _path(config, cwd)
    pattern = str(config.get("pattern") or "")
    entries = []
    walk = _walk(root) if config.get("recursive") else ((p, os.lstat(p)) for p in sorted(_children(root)))
    for p, st in walk:
        rel = os.path.relpath(p, root)
        if stat.S_ISDIR(st.st_mode) and not config.get("include_dirs"):
            continue
        if pattern and not fnmatch.fnmatchcase(rel, pattern):
            continue
        entries.append(_info(p, st, rel))
    _emit(out, {"operation": "list", "path": root, "entries": entries})


def _children(root: str) -> list[str]:
    return [os.path.join(root, n) for n in os.listdir(root)]


FILE: dict[str, Callable[[Mapping[str, Any], str, BinaryIO], None]] = {
    "stat": _stat,
    "read": _read,
    "write": _write,
    "copy": _copy,
    "move": _move,
    "delete": _delete,
    "mkdir": _mkdir,
    "list": _list,
}


# ---- archive.* -------------------------------------------------------------------------------

_open_tar: Any = tarfile.open  # (its modes are computed: typeshed's overloads want literals)
_TAR_MODES = {"tar": "", "tar.gz": "gz", "tgz": "gz", "tar.bz2": "bz2", "tbz2": "bz2", "tar.xz": "xz", "txz": "xz"}


def _format(config: Mapping[str, Any], path: str) -> str:
    fmt = str(config.get("format") or "").lower().lstrip(".")
    if not fmt:
        name = path.lower()
        fmt = next((f for f in sorted([*_TAR_MODES, "zip"], key=len, reverse=True) if name.endswith("." + f)), "")
    if fmt != "zip" and fmt not in _TAR_MODES:
        raise StepFailed(f"archive: cannot tell the format of {path}: set format (zip, tar, tar.gz, tar.bz2, tar.xz)")
    return fmt


def _selected(name: str, config: Mapping[str, Any]) -> bool:
    include = [str(p) for p in config.get("include") or []]
    exclude = [str(p) for p in config.get("exclude") or []]
    base = os.path.basename(name)
    if include and not any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(base, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(base, p) for p in exclude)


def _archive_create(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    source, dest = _path(config, cwd, "source"), _path(config, cwd, "destination")
    fmt = _format(config, dest)
    if not os.path.exists(source):
        raise StepFailed(f"archive.create: source {source} does not exist")
    base = os.path.dirname(source) if config.get("preserve_paths", True) else source
    members: list[tuple[str, str]] = []
    if os.path.isdir(source):
        top = os.path.relpath(source, base) if base != source else ""
        for dirpath, dirnames, filenames in os.walk(source, followlinks=bool(config.get("follow_symlinks"))):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, source)
                arc = os.path.join(top, rel) if top else rel
                if _selected(rel, config):
                    members.append((p, arc))
    else:
        members.append((source, os.path.basename(source)))
    if config.get("dry_run"):
        _emit(
            out, {"operation": "create", "source": source, "destination": dest, "files": len(members), "dryRun": True}
        )
        return
    if os.path.exists(dest) and not config.get("overwrite", True):
        raise StepFailed(f"archive.create: {dest} exists")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    level = int(config.get("compression_level", -1))
    tmp = dest + ".dagd-tmp"
    size = 0
    try:
        if fmt == "zip":
            kw: dict[str, Any] = {"compresslevel": level} if 0 <= level <= 9 else {}
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, **kw) as zf:
                for p, arc in members:
                    zf.write(p, arc)
                    size += os.path.getsize(p)
        else:
            mode = _TAR_MODES[fmt]
            kw = {"compresslevel": level} if mode in ("gz", "bz2") and 1 <= level <= 9 else {}
            with _open_tar(tmp, f"w:{mode}", **kw) as tf:
                for p, arc in members:
                    tf.add(p, arc, recursive=False)
                    size += os.path.getsize(p)
        if config.get("verify_integrity"):
            _names(tmp, fmt)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if config.get("verbose"):
        for _, arc in members:
            out.write(f"{arc}\n".encode())
    _emit(
        out,
        {
            "operation": "create",
            "source": source,
            "destination": dest,
            "format": fmt,
            "files": len(members),
            "bytes": size,
        },
    )


def _names(path: str, fmt: str) -> list[tuple[str, int, bool]]:
    if fmt == "zip":
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise StepFailed(f"archive: {path}: {bad} is corrupt")
            return [(i.filename, i.file_size, i.is_dir()) for i in zf.infolist()]
    with _open_tar(path, f"r:{_TAR_MODES[fmt]}") as tf:
        return [(m.name, m.size, m.isdir()) for m in tf.getmembers()]


def _archive_list(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    source = _path(config, cwd, "source")
    fmt = _format(config, source)
    if config.get("password"):
        raise StepFailed("archive: password-protected archives are not supported by dagd")
    entries = [{"name": n, "size": s, "isDir": d} for n, s, d in _names(source, fmt) if _selected(n, config)]
    _emit(out, {"operation": "list", "source": source, "format": fmt, "files": len(entries), "entries": entries})


def _strip(name: str, n: int) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts[n:]) or None


def _archive_extract(config: Mapping[str, Any], cwd: str, out: BinaryIO) -> None:
    source = _path(config, cwd, "source")
    dest = _path(config, cwd, "destination") if config.get("destination") else cwd
    fmt = _format(config, source)
    if config.get("password"):
        raise StepFailed("archive: password-protected archives are not supported by dagd")
    strip_n = int(config.get("strip_components") or 0)
    overwrite = bool(config.get("overwrite"))
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    count = size = 0
    errors: list[str] = []

    def target(name: str) -> str | None:
        rel = _strip(name, strip_n)
        if rel is None or not _selected(rel, config):
            return None
        full = os.path.realpath(os.path.join(root, rel))
        if full != root and not full.startswith(root + os.sep):
            raise StepFailed(f"archive.extract: {name} would land outside {dest}; refused")
        return full

    def place(name: str, data: Callable[[], Any], is_dir: bool, mode: int | None, nbytes: int) -> None:
        nonlocal count, size
        full = target(name)
        if full is None:
            return
        if is_dir:
            os.makedirs(full, exist_ok=True)
            return
        if os.path.lexists(full) and not overwrite:
            problem = f"{full} exists (overwrite: true replaces it)"
            if config.get("continue_on_error"):
                errors.append(problem)
                return
            raise StepFailed(f"archive.extract: {problem}")
        if config.get("dry_run"):
            count += 1
            return
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with data() as src, open(full, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if mode is not None:
            os.chmod(full, mode & 0o777)
        count += 1
        size += nbytes
        if config.get("verbose"):
            out.write(f"{os.path.relpath(full, root)}\n".encode())

    if fmt == "zip":
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                unix = info.external_attr >> 16
                place(info.filename, lambda i=info: zf.open(i), info.is_dir(), unix or None, info.file_size)  # type: ignore[misc]
    else:
        with _open_tar(source, f"r:{_TAR_MODES[fmt]}") as tf:
            for m in tf.getmembers():
                if not (m.isfile() or m.isdir()):
                    continue  # links and devices are not extracted (they could point anywhere)
                fh = tf.extractfile(m) if m.isfile() else None
                place(m.name, lambda f=fh: f, m.isdir(), m.mode, m.size)  # type: ignore[misc]
    result: dict[str, Any] = {
        "operation": "extract",
        "source": source,
        "destination": dest,
        "files": count,
        "bytes": size,
    }
    if config.get("dry_run"):
        result["dryRun"] = True
    if errors:
        result["errors"] = errors
    _emit(out, result)


ARCHIVE: dict[str, Callable[[Mapping[str, Any], str, BinaryIO], None]] = {
    "create": _archive_create,
    "extract": _archive_extract,
    "list": _archive_list,
}
