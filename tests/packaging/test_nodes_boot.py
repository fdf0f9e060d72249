"""Two dagd nodes on one PostgreSQL, set up as the README's "Running on several machines" says:
the packaged dagd under a real systemd (a booted Debian machine whose config.yaml is given
`store:`, `node_id` and `node_labels`) and a dagd on this host, both on a PostgreSQL from
Debian's packages whose Unix socket the machine sees (bind-mounted: the machine has no network).
Each node lists both, a run placed by worker_selector runs on the other node, and its result and
its logs show on both."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests import postgres
from tests.integration.test_daemon import start_daemon, wait_until
from tests.packaging.test_systemd_boot import boot

DAGS = {
    "on-host.yaml": "worker_selector: {where: host}\nsteps:\n  - id: say\n    run: echo placed on the host\n",
    "in-box.yaml": "worker_selector: {where: box}\nsteps:\n  - id: say\n    run: echo placed in the box > /tmp/in-box-ran; cat /tmp/in-box-ran\n",
}


def test_a_packaged_node_under_systemd_and_a_second_node_share_one_postgres(
    deb: Path, pg: postgres.Server, tmp_path: Path
) -> None:
    os.chmod(pg.socket_dir, 0o755)  # the machine's dagd user reaches the socket (trust, as user postgres)
    dsn = pg.fresh("dagd_nodes")
    config = (
        "store: postgresql:///dagd_nodes?host=/run/dagd-pg&user=postgres\nnode_id: box\nnode_labels: {where: box}\n"
    )
    (tmp_path / "machine").mkdir()
    with boot(deb, tmp_path / "machine", binds=(f"{pg.socket_dir}:/run/dagd-pg",), config=config) as m:
        for name, text in DAGS.items():
            m.sh(f"cat > /etc/dagd/dags/{name} <<'EOF'\n{text}EOF")
        m.sh("dagctl reload")
        host_root = tmp_path / "host"
        (host_root / "dags").mkdir(parents=True)
        for name, text in DAGS.items():
            (host_root / "dags" / name).write_text(text)
        (host_root / "config.yaml").write_text("node_labels: {where: host}\n")
        host = start_daemon(
            host_root,
            {"DAGD_STORE": dsn, "DAGD_NODE_ID": "host"},
            ("--no-http", "--config", str(host_root / "config.yaml")),
        )
        try:

            def both() -> list[dict[str, Any]] | None:
                listed: list[dict[str, Any]] = json.loads(m.sh("dagctl nodes --json").stdout)
                return listed if len(listed) == 2 else None

            listed = wait_until(both, timeout=30)
            assert [(n["id"], n["labels"]) for n in listed] == [("box", {"where": "box"}), ("host", {"where": "host"})]
            # queued in the machine, run on the host — and shown, logs too, in the machine
            rid = m.sh("dagctl enqueue on-host").stdout.strip()

            def ended_in_box() -> dict[str, Any] | None:
                doc: dict[str, Any] = json.loads(m.sh(f"dagctl status on-host {rid} --json").stdout)
                return doc if doc["status"] == "succeeded" else None

            doc = wait_until(ended_in_box, timeout=60)
            assert doc["node"] == "host", doc
            assert "placed on the host" in m.sh(f"dagctl logs on-host {rid}").stdout
            # queued on the host, run by the packaged dagd in the machine
            rid = host.ctl("enqueue", "in-box").stdout.strip()

            def ended_on_host() -> dict[str, Any] | None:
                doc: dict[str, Any] = json.loads(host.ctl("status", "in-box", rid, "--json").stdout)
                return doc if doc["status"] == "succeeded" else None

            doc = wait_until(ended_on_host, timeout=60)
            assert doc["node"] == "box", doc
            assert m.sh("cat /tmp/in-box-ran").stdout.strip() == "placed in the box"
            shown = host.ctl("logs", "in-box", rid)
            assert shown.code == 0 and "placed in the box" in shown.stdout, (shown.stdout, shown.stderr)
        finally:
            host.close()
