"""The shipped system unit stays hardened: systemd's own exposure score, computed offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "dagd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_scores_below_5_in_systemd_analyze_security(tmp_path: Path) -> None:
    unit = tmp_path / "dagd.service"
    unit.write_text(UNIT.read_text())
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for dagd\.service: ([0-9.]+)", p.stdout)
    assert score, p.stdout + p.stderr
    assert float(score.group(1)) < 5.0
    text = UNIT.read_text()
    assert "ConfigurationDirectory=" not in text  # would make config.yaml writable for dagd
    assert "NoNewPrivileges=yes" in text and "ProtectSystem=strict" in text
