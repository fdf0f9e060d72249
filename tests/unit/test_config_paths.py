"""Path discovery must survive places it may not read (dagd as the dagd user, HOME elsewhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_an_unreadable_home_reads_as_absent_not_as_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "dagu").mkdir(parents=True)
    (home / ".config" / "dagu" / "base.yaml").write_text("env: [A=1]\n")
    home.chmod(0o700)  # root's; nobody cannot look inside
    tmp_path.chmod(0o755)
    # nobody may not be able to enter the checkout (a clone in a 0700 folder): give it a copy of
    # the two modules it imports, in a folder it can read
    readable = Path(tempfile.mkdtemp(prefix="dagd-config-"))
    try:
        readable.chmod(0o755)
        (readable / "dagd").mkdir(mode=0o755)
        for name in ("__init__.py", "config.py"):
            shutil.copy(ROOT / "dagd" / name, readable / "dagd" / name)
            (readable / "dagd" / name).chmod(0o644)
        code = f"import sys; sys.path.insert(0, {str(readable)!r}); from dagd import config; print(config.base_config(), config.dags_dir())"
        r = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", code],
            env={"PATH": os.environ["PATH"], "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
    finally:
        shutil.rmtree(readable)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", str(home / ".config" / "dagd" / "dags")]


def test_dagd_system_gives_a_non_root_user_the_system_paths() -> None:
    code = "from dagd import config; print(config.user_mode(), config.config_dir(), config.state_dir(), config.socket_path())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGD_")}
    r = subprocess.run(
        [sys.executable, "-c", code], env={**env, "DAGD_SYSTEM": "1"}, capture_output=True, text=True, cwd=ROOT
    )
    assert r.stdout.split() == ["False", "/etc/dagd", "/var/lib/dagd", "/run/dagd/dagd.sock"], r.stderr
