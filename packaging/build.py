"""Build dagd's .deb and .rpm: our code and its Python dependencies in /usr/lib/dagd/python for
the distribution's python3 (same minor version as the build interpreter), the built web UI, units,
default configuration, completions, man pages; packed by nfpm from one config.

    .venv/bin/python packaging/build.py deb|rpm [--out dist]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "pkg"
LIB = "/usr/lib/dagd/python"

WRAPPER = """\
#!/usr/bin/python3 -I
# {name}: dagd's bundled Python packages live in {lib} (see /usr/share/doc/dagd/copyright).
import sys

sys.path.insert(0, "{lib}")
{fast}from {module} import {func}

sys.exit({func}())
"""

# dagd.service's ExecStartPre= (`dagd --release-cgroup`) runs at every start: without the daemon's
# imports it takes a third of the time
FAST = {
    "dagd": 'if sys.argv[1:] == ["--release-cgroup"]:\n    from dagd.cgroups import release_main\n\n    sys.exit(release_main())\n',
}

BUNDLED = [  # (distribution, license) of what pip puts beside dagd, for the copyright file
    "PyYAML MIT",
    "croniter MIT",
    "sdnotify MIT",
    "trio MIT-or-Apache-2.0",
    "litestar MIT",
    "click BSD-3-clause",
    "Hypercorn MIT",
    "msgspec BSD-3-clause",
    "httpx BSD-3-clause",
    "psycopg LGPL-3.0-only",
    "redis MIT",
    "and their own dependencies (see each *.dist-info in /usr/lib/dagd/python)",
]


def run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


VERSION_OVERRIDE: list[str] = []  # --version: packages of other versions, for the upgrade test


def version() -> str:
    if VERSION_OVERRIDE:
        return VERSION_OVERRIDE[0]
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def python_minor() -> tuple[int, int]:
    out = run(
        "/usr/bin/python3", "-c", "import sys; print(sys.version_info[0], sys.version_info[1])", capture_output=True
    )
    major, minor = (int(x) for x in out.stdout.split())
    if (major, minor) != sys.version_info[:2]:
        sys.exit(
            f"build.py: the build interpreter is Python {sys.version_info[0]}.{sys.version_info[1]} but /usr/bin/python3 "
            f"is {major}.{minor}; the bundle's compiled modules must match the target's python3"
        )
    return major, minor


def stage(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    BUILD.mkdir(parents=True, exist_ok=True)
    if not (ROOT / "dagd" / "http" / "ui" / "index.html").is_file():
        sys.exit("build.py: the web UI is not built (make web)")
    lib = root / LIB.lstrip("/")
    for stale in [
        *BUILD.parent.glob("lib.*"),
        *BUILD.parent.glob("temp.*"),
        *BUILD.parent.glob("bdist.*"),
    ]:  # setuptools' in-tree
        shutil.rmtree(stale)  # build of dagd._spawn: never package an object built by an older setup.py
    run(
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--no-warn-script-location",
        "--target", lib, "-c", ROOT / "constraints.txt", ROOT,
        stdout=subprocess.DEVNULL, stderr=open(BUILD / "pip.log", "w"),  # noqa: SIM115
    )  # fmt: skip
    shutil.rmtree(lib / "bin", ignore_errors=True)  # console scripts of the dependencies: unused
    for junk in [*lib.rglob("__pycache__"), *lib.glob("*/tests")]:  # bytecode is made by postinst
        shutil.rmtree(junk, ignore_errors=True)
    for so in lib.rglob("*.so"):
        if so.name.startswith("_testcapi"):  # multidict's test helper
            so.unlink()
        else:
            run("strip", "--strip-unneeded", "--remove-section=.comment", "--remove-section=.note", so)
    for py in lib.rglob("*.py"):  # modules, not scripts: no shebangs, not executable
        text = py.read_bytes()
        if text.startswith(b"#!"):
            py.write_bytes(text.split(b"\n", 1)[1] if b"\n" in text else b"")
        py.chmod(0o644)
    bindir = root / "usr" / "bin"
    bindir.mkdir(parents=True)
    for name, module, func in (("dagd", "dagd.daemon", "cli"), ("dagctl", "dagctl.cli", "run")):
        path = bindir / name
        path.write_text(WRAPPER.format(name=name, lib=LIB, module=module, func=func, fast=FAST.get(name, "")))
        path.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1"}
    for page, section in (("dagd", 8), ("dagctl", 1)):
        text = run(sys.executable, ROOT / "packaging" / "manpage.py", page, capture_output=True, env=env).stdout
        _gz(root / f"usr/share/man/man{section}/{page}.{section}.gz", text)
    for shell, dest in (
        ("bash", "usr/share/bash-completion/completions/dagctl"),
        ("zsh", "usr/share/zsh/vendor-completions/_dagctl"),
        ("fish", "usr/share/fish/vendor_completions.d/dagctl.fish"),
    ):
        script = run(
            sys.executable, "-c", "from dagctl.cli import run; run()",
            capture_output=True, env={**env, "_DAGCTL_COMPLETE": f"{shell}_source"},
        ).stdout  # fmt: skip
        out = root / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(script)
    doc = root / "usr/share/doc/dagd"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_file())
    shutil.copy(ROOT / "systemd" / "README.md", doc / "README.systemd")
    overrides = root / "usr/share/lintian/overrides/dagd"
    overrides.parent.mkdir(parents=True)
    overrides.write_text(
        "# PyYAML's wheel links libyaml statically; dagd bundles its Python dependencies for one python3\n"
        "dagd: embedded-library libyaml [usr/lib/dagd/python/yaml/_yaml.cpython-*.so]\n"
        "# dagd.service and dagd.socket are started and stopped as Debian's convention asks, without\n"
        "# debhelper's generated snippets (the package is built by nfpm)\n"
        "dagd: maintainer-script-calls-systemctl *\n"
    )
    _gz(
        doc / "changelog.Debian.gz",
        textwrap.dedent(f"""\
            dagd ({version()}) unstable; urgency=medium

              * Release {version()}: see https://github.com/ for the history of dagd.

             -- dagd maintainers <dagd-maintainers@users.noreply.github.com>  Tue, 24 Nov 2026 00:00:00 +0000
            """),
    )


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write(text.encode())


def copyright_file() -> str:
    lic = (ROOT / "LICENSE").read_text().split("\n", 3)[3].strip()
    body = "\n".join(" " + (line if line.strip() else ".") for line in lic.splitlines())
    bundled = "\n".join(f" {b}" for b in BUNDLED)
    return textwrap.dedent("""\
        Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
        Upstream-Name: dagd
        Comment: /usr/lib/dagd/python bundles these Python distributions, each under its own licence:
        {bundled}

        Files: *
        Copyright: 2026 the dagd authors
        License: Expat

        License: Expat
        {body}
        """).format(bundled=bundled, body=body)


def nfpm_config(root: Path, packager: str, minor: tuple[int, int]) -> Path:
    major, mnr = minor
    sysd = ROOT / "systemd"
    contents: list[dict[str, str]] = []
    for top in sorted(p for p in (root / "usr").glob("*/*") if p.is_dir()):
        rel = top.relative_to(root)
        if str(rel) in ("usr/share/doc", "usr/share/man"):  # marked as documentation, file by file
            for f in sorted(x for x in top.rglob("*") if x.is_file()):
                entry = {"src": str(f), "dst": "/" + str(f.relative_to(root))}
                contents.append({**entry, "type": "doc"} if packager == "rpm" else entry)
        else:
            contents.append({"src": str(top), "dst": "/" + str(rel), "type": "tree"})
    for f in sorted(p for p in (root / "usr" / "bin").iterdir()):
        contents.append({"src": str(f), "dst": "/usr/bin/" + f.name})
    contents += [
        {"src": str(sysd / "dagd.service"), "dst": "/usr/lib/systemd/system/dagd.service"},
        {"src": str(sysd / "dagd.socket"), "dst": "/usr/lib/systemd/system/dagd.socket"},
        {"src": str(sysd / "dagd-http.socket"), "dst": "/usr/lib/systemd/system/dagd-http.socket"},
        {"src": str(sysd / "user" / "dagd.service"), "dst": "/usr/lib/systemd/user/dagd.service"},
        {"src": str(sysd / "dagd.sysusers"), "dst": "/usr/lib/sysusers.d/dagd.conf"},
        {"src": str(sysd / "dagd.tmpfiles"), "dst": "/usr/lib/tmpfiles.d/dagd.conf"},
        {"src": str(sysd / "config.yaml"), "dst": "/etc/dagd/config.yaml", "type": "config|noreplace"},
        {"src": str(sysd / "dags" / "example.yaml"), "dst": "/etc/dagd/dags/example.yaml", "type": "config|noreplace"},
    ]
    config = {
        "name": "dagd",
        "arch": "amd64",
        "platform": "linux",
        "version": version(),
        "release": "1",
        "section": "admin",
        "priority": "optional",
        "maintainer": "dagd maintainers <dagd-maintainers@users.noreply.github.com>",
        "description": (
            "systemd-native workflow daemon for Dagu DAG files\n"
            "dagd runs DAGs of shell steps written in Dagu's YAML format on cron\n"
            "schedules, keeps every run's history in SQLite and is driven by dagctl\n"
            "over a Unix socket and by a web UI on 127.0.0.1:8090."
        ),
        "vendor": "dagd",
        "homepage": "https://github.com/dagd/dagd",
        "license": "MIT",
        "contents": contents,
        "overrides": {
            "deb": {
                "depends": [
                    f"python3 (>= {major}.{mnr}~)",
                    f"python3 (<< {major}.{mnr + 1})",
                    "libc6 (>= 2.17)",  # the manylinux2014 floor of the bundled extension modules
                    "adduser",
                ],
                # what builtin actions run: postgres steps load libpq; ssh/sftp, container and
                # jq steps run these programs (a step without its program fails saying so)
                "recommends": ["libpq5", "openssh-client", "podman | docker.io", "jq"],
                "scripts": {
                    "postinstall": str(ROOT / "packaging/deb/postinst"),
                    "preremove": str(ROOT / "packaging/deb/prerm"),
                    "postremove": str(ROOT / "packaging/deb/postrm"),
                },
            },
            "rpm": {
                "depends": [f"python(abi) = {major}.{mnr}", "shadow-utils"],
                "recommends": ["libpq", "openssh-clients", "podman", "jq"],
                "scripts": {
                    "postinstall": str(ROOT / "packaging/rpm/post"),
                    "preremove": str(ROOT / "packaging/rpm/preun"),
                    "postremove": str(ROOT / "packaging/rpm/postun"),
                },
            },
        },
        "rpm": {"group": "System Environment/Daemons", "summary": "systemd-native workflow daemon for Dagu DAGs"},
    }
    import json

    path = BUILD / f"nfpm-{packager}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("packager", choices=["deb", "rpm"])
    ap.add_argument("--out", default=str(ROOT / "dist"))
    ap.add_argument("--version", help="package version (default: pyproject's)")
    args = ap.parse_args()
    if args.version:
        VERSION_OVERRIDE.append(args.version)
    minor = python_minor()
    root = BUILD / "root"
    stage(root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nfpm = Path(sys.executable).with_name("nfpm")
    cfg = nfpm_config(root, args.packager, minor)
    run(nfpm, "package", "--config", cfg, "--packager", args.packager, "--target", out, stdout=subprocess.DEVNULL)
    for f in sorted(out.glob(f"dagd*.{args.packager}")):
        print(f)


if __name__ == "__main__":
    main()
