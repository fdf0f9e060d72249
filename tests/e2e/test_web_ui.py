"""The web UI in a real browser (Debian's chromium driven by Playwright) against a real dagd.

Screenshots of every page land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dagd.http.app import UI_DIR
from tests.integration.test_daemon import Daemon
from tests.integration.test_http_api import start_with_http

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ETL = """\
description: Extract, transform and load the nightly numbers
labels: [team=data, nightly]
schedule: "30 2 * * *"
params:
  - WHO: world
  - COUNT: "3"
steps:
  - id: extract
    run: echo "hello ${WHO}" && echo "${WHO}" > {out}/who.txt && sleep 0.6
  - id: transform
    depends: extract
    run: sleep 0.6; echo transformed ${COUNT}
  - id: load
    depends: transform
    run: sleep 0.4; echo loaded
  - id: report
    depends: transform
    run: echo report >&2
"""

LONG = """\
description: Runs until someone stops it
steps:
  - id: forever
    run: echo started; echo $$ > {out}/forever.pid; exec sleep 300
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, Path]]:
    if not (UI_DIR / "index.html").is_file():
        pytest.fail("the web UI is not built (make web); make test builds it before the suite")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (make test-deps installs Debian's chromium)")
    root = tmp_path_factory.mktemp("ui")
    out = root / "out"
    out.mkdir()
    (root / "dags").mkdir()
    (root / "dags" / "etl.yaml").write_text(ETL.replace("{out}", str(out)))
    (root / "dags" / "long.yaml").write_text(LONG.replace("{out}", str(out)))
    (root / "dags" / "parent.yaml").write_text("steps:\n  - id: delegate\n    call: child\n")
    (root / "dags" / "child.yaml").write_text("steps:\n  - id: work\n    run: echo child at work\n")
    d, base = start_with_http(root)
    yield d, base, out
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    ctx.close()


@contextlib.contextmanager
def extra_dag(d: Daemon, name: str, text: str, loaded: Callable[[], bool], gone: Callable[[], bool]) -> Iterator[None]:
    """A DAG file added to the shared daemon's folder for one test, and taken away after it (the
    other tests count the DAGs): `loaded` and `gone` say when dagd has seen each change."""
    path = d.root / "dags" / f"{name}.yaml"
    path.write_text(text)
    try:
        wait_for(loaded, f"{name}.yaml was never loaded")
        yield
    finally:
        path.unlink()
        wait_for(gone, f"{name}.yaml is still loaded")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll an observable state of dagd (its API) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _listed(base: str, name: str) -> bool:
    return httpx.get(f"{base}/api/v1/dags/{name}").status_code == 200


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_list_search_and_tag_filter(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    pg = page
    pg.goto(base + "/dags")
    rows = pg.locator("tr[data-dag]")
    expect(rows).to_have_count(4)
    expect(pg.locator("tr[data-dag=etl]")).to_contain_text("30 2 * * *")
    expect(pg.locator("tr[data-dag=etl]")).to_contain_text("next in")
    shot(pg, "dag-list-first-visit")
    pg.get_by_label("Search DAGs").fill("nightly numbers")
    expect(rows).to_have_count(1)
    expect(pg.get_by_test_id("dag-count")).to_have_text("1 of 4")
    pg.get_by_label("Search DAGs").fill("")
    pg.locator("tr[data-dag=etl]").get_by_text("nightly", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-dag", "etl")


def test_run_now_with_a_param_turns_the_graph_green_live(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, out = ui
    # the module's daemon is shared: another test on this worker may have run etl already
    before = len(httpx.get(base + "/api/v1/dag-runs?name=etl").json()["dagRuns"])
    pg = page
    pg.goto(base + "/dags")
    pg.get_by_role("link", name="etl", exact=True).click()
    nodes = pg.locator(".react-flow__node")
    expect(nodes).to_have_count(4)
    pg.get_by_role("button", name="Run now").click()
    who = pg.get_by_label("WHO")
    expect(who).to_have_value("world")
    who.fill("Playwright and friends")
    pg.get_by_role("button", name="Start").click()
    # the page is not reloaded: the colours arrive over SSE
    expect(pg.locator(".react-flow__node.status-running")).to_have_count(1)
    expect(pg.locator(".react-flow__node.status-succeeded")).to_have_count(4, timeout=20_000)
    expect(pg.get_by_test_id("latest-run")).to_contain_text("succeeded")
    expect(pg.locator(".react-flow__node").first).to_be_in_viewport()
    shot(pg, "dag-page")
    assert (out / "who.txt").read_text().strip() == "Playwright and friends"
    pg.get_by_role("tab", name="History").click()
    expect(pg.get_by_test_id("history").locator("tbody tr")).to_have_count(before + 1)
    expect(pg.get_by_test_id("history")).to_contain_text("succeeded")


def test_run_page_timeline_resources_and_step_log(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    runs = httpx.get(base + "/api/v1/dag-runs?name=etl").json()["dagRuns"]
    if not runs:  # this test also runs alone
        rid = httpx.post(base + "/api/v1/dags/etl/start", json={"params": 'WHO="solo"'}).json()["dagRunId"]
        httpx.post(base + "/api/v1/dags/etl/start-sync", json={"timeout": 30, "singleton": False})
    else:
        rid = runs[0]["dagRunId"]
    pg = page
    pg.goto(f"{base}/dags/etl/runs/{rid}")
    expect(pg.get_by_test_id("gantt").locator("[data-bar]")).to_have_count(4, timeout=20_000)
    row = pg.locator("tr[data-step=extract]")
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text(re.compile(r"\d [KMG]iB"))  # peak memory measured per step
    row.click()
    expect(pg.get_by_test_id("log")).to_contain_text("hello ")
    shot(pg, "run-page")
    pg.locator("tr[data-step=report]").click()
    pg.get_by_text("stderr", exact=True).click()
    expect(pg.get_by_test_id("log")).to_contain_text("report")


def test_stop_a_long_run_from_its_page(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, out = ui
    pg = page
    pg.goto(base + "/dags/long")
    pg.get_by_role("button", name="Run now").click()
    pg.get_by_role("button", name="Start").click()
    expect(pg.locator(".react-flow__node.status-running")).to_have_count(1)
    pg.get_by_role("link", name="running").click()
    expect(pg.get_by_test_id("log")).to_contain_text("started")  # streamed live
    pid = int((out / "forever.pid").read_text())
    pg.get_by_role("button", name="Stop").click()
    expect(pg.locator("tr[data-step=forever]")).to_contain_text("aborted", timeout=20_000)
    expect(pg.get_by_role("button", name="Retry")).to_be_visible()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the step's process survived Stop"


def test_spec_editor_refuses_invalid_yaml_and_keeps_the_file(ui: tuple[Daemon, str, Path], page: Page) -> None:
    d, base, _ = ui
    before = (d.root / "dags" / "long.yaml").read_text()
    pg = page
    pg.goto(base + "/dags/long")
    pg.get_by_role("tab", name="Spec").click()
    pg.get_by_role("button", name="Edit").click()
    pg.get_by_label("DAG YAML").fill("steps:\n  - id: a\n    depends: nowhere\n    run: true\n")
    pg.get_by_role("button", name="Save").click()
    expect(pg.get_by_test_id("spec-errors")).to_contain_text("nowhere")
    assert (d.root / "dags" / "long.yaml").read_text() == before


def test_dark_theme_and_phone_layout(ui: tuple[Daemon, str, Path], browser: Browser) -> None:
    _, base, _ = ui
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    pg = ctx.new_page()
    pg.goto(base + "/dags")
    expect(pg.locator("html")).to_have_attribute("data-mantine-color-scheme", "dark")
    expect(pg.locator("tr[data-dag]")).to_have_count(4)
    width = pg.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    shot(pg, "dag-list-phone-dark")
    pg.get_by_label("Toggle colour theme").click()
    expect(pg.locator("html")).to_have_attribute("data-mantine-color-scheme", "light")
    runs = httpx.get(base + "/api/v1/dag-runs?name=etl").json()["dagRuns"]
    pages = ["/dags/etl"] + ([f"/dags/etl/runs/{runs[0]['dagRunId']}"] if runs else [])
    for path in pages:
        pg.goto(base + path)
        expect(pg.get_by_role("heading", name="etl")).to_be_visible()
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
    shot(pg, "run-page-phone" if runs else "dag-page-phone")
    ctx.close()


def test_a_thousand_dags_list_search_and_page_smoothly(tmp_path: Path, browser: Browser) -> None:
    (tmp_path / "dags").mkdir()
    for i in range(1000):
        (tmp_path / "dags" / f"job{i:04d}.yaml").write_text(
            f"description: job number {i}\nlabels: [team{i % 7}]\nschedule: '*/{i % 50 + 5} * * * *'\n"
            "steps:\n  - id: a\n    run: 'true'\n  - {id: b, depends: a, run: 'true'}\n"
        )
    d, base = start_with_http(tmp_path)
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        pg = ctx.new_page()
        t0 = time.monotonic()
        pg.goto(base + "/dags")
        expect(pg.get_by_test_id("dag-count")).to_have_text("1000 of 1000", timeout=30_000)
        loaded = time.monotonic() - t0
        expect(pg.locator("tr[data-dag]")).to_have_count(50)  # one page in the DOM, not 1000 rows
        t1 = time.monotonic()
        pg.get_by_label("Search DAGs").fill("job number 999")
        expect(pg.locator("tr[data-dag]")).to_have_count(1)
        searched = time.monotonic() - t1
        pg.get_by_label("Search DAGs").fill("")
        pg.get_by_role("button", name="20").click()
        expect(pg.locator("tr[data-dag]").first).to_have_attribute("data-dag", "job0950")
        assert loaded < 5 and searched < 2, (loaded, searched)
        ctx.close()
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)


def test_a_hundred_thousand_runs_page_and_filter_on_the_runs_page(tmp_path: Path, browser: Browser) -> None:
    import sqlite3

    from dagd.store.db import Store

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "nightly.yaml").write_text("steps:\n  - id: a\n    run: 'true'\n")
    (tmp_path / "state").mkdir()
    Store(str(tmp_path / "state" / "dagd.db")).close()  # dagd's schema, then the history below
    now = time.time()
    statuses = ["succeeded", "succeeded", "succeeded", "failed", "aborted"]
    rows = [  # 100 000 runs of 100 DAGs over the last 30 days, one every 26 s
        (f"hist{i:06d}", f"dag{i % 100:03d}", "/d.yaml", statuses[i % 5], "scheduler", "{}", now - 60 - i * 26)
        for i in range(100_000)
    ]
    db = sqlite3.connect(tmp_path / "state" / "dagd.db")
    with db:
        db.executemany(
            "INSERT INTO dag_runs (id, dag, file, status, status_code, trigger, params, started_at, finished_at)"
            " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
            [(*r, r[-1] + 5) for r in rows],
        )
    db.close()
    d, base = start_with_http(tmp_path)
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        pg = ctx.new_page()
        pg.goto(base + "/runs")
        table = pg.locator("tr[data-run]")
        expect(table).to_have_count(50)
        expect(table.first).to_have_attribute("data-run", "hist000000")  # newest first
        seen: set[str] = set()
        for page_no in range(3):  # cursor pages: each the next 50, none repeated
            ids = {table.nth(i).get_attribute("data-run") or "" for i in range(50)}
            assert not ids & seen and len(ids) == 50, page_no
            seen |= ids
            top = table.first.get_attribute("data-run") or ""
            pg.get_by_role("button", name="Older").click()
            expect(table.first).not_to_have_attribute("data-run", top)
        expect(pg).to_have_url(re.compile(r"[?&]cursor="))
        assert "hist000150" in {table.nth(i).get_attribute("data-run") for i in range(50)}
        # statuses and days filter the whole history, not the page
        pg.goto(base + "/runs?status=failed")
        expect(table).to_have_count(50)
        expect(table.first).to_have_attribute("data-run", "hist000003")
        expect(pg.locator("tr[data-run] [data-status]:not([data-status=failed])")).to_have_count(0)
        pg.get_by_role("button", name="Yesterday").click()
        expect(pg).to_have_url(re.compile(r"from=.*&to="))
        expect(table.first).not_to_have_attribute("data-run", "hist000003")  # the day's newest failure
        expect(table).to_have_count(50)
        first = table.first.get_attribute("data-run") or ""
        started = now - 60 - int(first[4:]) * 26
        assert time.localtime(started).tm_yday == time.localtime(now - 86400).tm_yday, first
        ctx.close()
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)


def test_a_sub_dag_run_is_linked_from_its_parent(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    r = httpx.post(base + "/api/v1/dags/parent/start-sync", json={"timeout": 30}, timeout=40).json()["dagRun"]
    assert r["statusLabel"] == "succeeded"
    page.goto(f"{base}/dags/parent/runs/{r['dagRunId']}")
    link = page.get_by_role("link", name=re.compile(r"^child · "))
    expect(link).to_have_count(1)
    link.click()
    expect(page).to_have_url(re.compile(r"/dags/child/runs/"))
    page.locator("tr[data-step=work]").click()
    expect(page.get_by_test_id("log")).to_contain_text("child at work")
    page.goto(base + "/dags")
    expect(page.locator("tr[data-dag=child]")).to_contain_text("succeeded")
    shot(page, "dag-list")


def test_runs_of_every_dag_filtered_in_the_url_and_acted_on_in_bulk(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    made = [
        httpx.post(base + "/api/v1/dags/child/start-sync", json={"timeout": 30, "singleton": False}, timeout=40).json()[
            "dagRun"
        ]["dagRunId"]
        for _ in range(3)
    ]
    children = [r["dagRunId"] for r in httpx.get(base + "/api/v1/dag-runs?name=child").json()["dagRuns"]]
    assert set(made) <= set(children)
    long_id = httpx.post(base + "/api/v1/dags/long/start", json={}).json()["dagRunId"]
    deadline = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/dag-runs/long/{long_id}").json()["dagRunDetails"]["statusLabel"] != "running":
        assert time.monotonic() < deadline, "the long run never started"
        time.sleep(0.1)
    pg = page
    pg.goto(base + "/runs?name=child")
    rows = pg.locator("tr[data-run]")
    expect(rows).to_have_count(len(children))
    # a filter is part of the URL, and the back button brings the previous view back
    pg.get_by_label("Filter by DAG name").fill("long")
    pg.get_by_label("Filter by DAG name").press("Enter")
    expect(pg).to_have_url(re.compile(r"[?&]name=long"))
    expect(pg.locator(f"tr[data-run='{long_id}']")).to_contain_text("running")
    pg.go_back()
    expect(pg).to_have_url(re.compile(r"[?&]name=child"))
    expect(rows).to_have_count(len(children))
    # labels: the runs of DAGs with them (etl.yaml is labelled nightly; child is not)
    pg.get_by_label("Filter by DAG labels").click()
    pg.get_by_role("option", name="nightly").click()
    expect(pg).to_have_url(re.compile(r"[?&]labels=nightly"))
    expect(rows).to_have_count(0)
    pg.go_back()
    expect(rows).to_have_count(len(children))
    pg.get_by_role("button", name="Today").click()  # they all started today
    expect(pg).to_have_url(re.compile(r"from=\d{4}-\d{2}-\d{2}&to=\d{4}-\d{2}-\d{2}"))
    expect(rows).to_have_count(len(children))
    pg.get_by_role("button", name="Yesterday").click()
    expect(pg.get_by_text("No run matches these filters.")).to_be_visible()
    # stop the running run from the list: asked once, its result shown
    pg.goto(base + "/runs?status=running")
    pg.get_by_label(f"Select run {long_id} of long").check()
    pg.get_by_role("button", name="Stop", exact=True).click()
    pg.get_by_role("button", name="Stop 1", exact=True).click()
    expect(pg.get_by_test_id("bulk-outcomes")).to_contain_text("1 of 1 succeeded")
    pg.keyboard.press("Escape")
    # no longer running: it leaves the list of running runs by itself (live, over the event stream)
    expect(pg.locator(f"tr[data-run='{long_id}']")).to_have_count(0, timeout=20_000)
    assert httpx.get(f"{base}/api/v1/dag-runs/long/{long_id}").json()["dagRunDetails"]["statusLabel"] == "aborted"
    # delete three runs at once: each gone, the list without them
    pg.goto(base + "/runs?name=child")
    expect(rows).to_have_count(len(children))
    httpx.post(base + "/api/v1/dags/child/start-sync", json={"timeout": 30, "singleton": False}, timeout=40)
    expect(rows).to_have_count(len(children) + 1)  # a new run shows up by itself (the event stream)
    for rid in made:
        pg.get_by_label(f"Select run {rid} of child").check()
    expect(pg.get_by_test_id("bulk-actions")).to_contain_text("3 selected")
    shot(pg, "runs-page")
    pg.get_by_role("button", name="Delete", exact=True).click()
    pg.get_by_role("button", name="Delete 3", exact=True).click()
    expect(pg.get_by_test_id("bulk-outcomes")).to_contain_text("3 of 3 succeeded")
    for rid in made:
        assert httpx.get(f"{base}/api/v1/dag-runs/child/{rid}").status_code == 404
    pg.keyboard.press("Escape")
    expect(rows).to_have_count(len(children) + 1 - 3)
    # grouped by DAG, or flat: part of the URL too
    pg.goto(base + "/runs")
    pg.get_by_text("By DAG", exact=True).click()
    expect(pg).to_have_url(re.compile(r"[?&]view=grouped"))
    left = len(children) + 1 - 3
    expect(pg.locator("tr[data-group=child]")).to_contain_text(f"child · {left} run{'s' if left != 1 else ''}")
    expect(pg.locator("tr[data-group=long]")).to_be_visible()


def test_queues_show_what_runs_and_what_waits_and_dequeue_one(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    ids = [httpx.post(base + "/api/v1/dags/long/start", json={}).json()["dagRunId"] for _ in range(3)]
    deadline = time.monotonic() + 20
    while httpx.get(f"{base}/api/v1/dag-runs/long/{ids[0]}").json()["dagRunDetails"]["statusLabel"] != "running":
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.1)
    pg = page
    try:
        pg.goto(base + "/queues")
        row = pg.locator("tr[data-queue=long]")
        expect(row).to_contain_text("1 / 1")  # max_active_runs: 1 — one runs, two wait
        expect(row).to_contain_text(ids[0])
        expect(pg.get_by_test_id("queue-summary")).to_contain_text("2 waiting")
        row.get_by_role("button", name="long").click()
        expect(pg).to_have_url(re.compile(r"[?&]open=long"))
        items = pg.get_by_test_id("queue-items").locator("tr[data-item]")
        expect(items).to_have_count(2)
        expect(items.first).to_contain_text(ids[1])  # oldest first
        shot(pg, "queues-page")
        pg.get_by_role("button", name=f"Dequeue {ids[1]}").click()
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text(ids[2])
        assert httpx.get(f"{base}/api/v1/dag-runs/long/{ids[1]}").json()["dagRunDetails"]["statusLabel"] == "aborted"
        # the page follows the daemon: the running run stopped elsewhere, the next one starts
        httpx.post(f"{base}/api/v1/dag-runs/long/{ids[0]}/stop")
        expect(row).to_contain_text(ids[2], timeout=20_000)
        expect(items).to_have_count(0)
    finally:
        for rid in ids:
            httpx.post(f"{base}/api/v1/dag-runs/long/{rid}/dequeue")
            httpx.post(f"{base}/api/v1/dag-runs/long/{rid}/stop")


def test_system_page_shows_the_daemon_its_store_next_fires_nodes_and_broken_files(
    ui: tuple[Daemon, str, Path], page: Page
) -> None:
    from dagd import __version__

    d, base, _ = ui
    broken = d.root / "dags" / "broken.yaml"

    def reported() -> bool:
        return bool(httpx.get(base + "/api/v1/system").json()["problems"])

    with extra_dag(
        d, "broken", "steps:\n  - id: a\n    depends: nowhere\n    run: 'true'\n", reported, lambda: not reported()
    ):
        pg = page
        pg.goto(base + "/system")
        expect(pg.get_by_test_id("health")).to_have_text("healthy")
        expect(pg.get_by_test_id("daemon")).to_contain_text(__version__)
        expect(pg.get_by_test_id("store")).to_contain_text("SQLite")
        expect(pg.get_by_test_id("store")).to_contain_text("dagd.db")
        expect(pg.locator("tr[data-fire=etl]")).to_contain_text("in ")  # 30 2 * * *: the next one
        expect(pg.locator(f"tr[data-problem='{broken}']")).to_contain_text("nowhere")
        expect(pg.get_by_test_id("nodes").locator("tr[data-node]")).to_have_count(1)
        shot(pg, "system-page")


def test_the_overview_answers_what_failed_and_why_in_two_clicks(ui: tuple[Daemon, str, Path], page: Page) -> None:
    d, base, _ = ui
    text = "steps:\n  - id: fetch\n    run: echo fetching\n  - id: boom\n    depends: fetch\n    run: echo 'disk quota exceeded' >&2; exit 3\n"
    with extra_dag(d, "flaky", text, lambda: _listed(base, "flaky"), lambda: not _listed(base, "flaky")):
        run = httpx.post(base + "/api/v1/dags/flaky/start-sync", json={"timeout": 30}, timeout=40).json()["dagRun"]
        assert run["statusLabel"] == "failed"
        error = httpx.get(base + "/api/v1/dag-runs?name=flaky").json()["dagRuns"][0]["error"]
        assert error
        pg = page
        pg.goto(base + "/")
        expect(pg.get_by_test_id("overview-what")).to_contain_text("last 24 hours")
        failed = pg.locator(f"tr[data-failed='{run['dagRunId']}']")
        expect(failed).to_contain_text(error)  # why, on the home page
        expect(pg.locator("[data-count=failed]")).not_to_contain_text("0")
        bar = pg.locator(f"[data-bar='{run['dagRunId']}']")
        expect(bar).to_have_attribute("data-status", "failed")
        shot(pg, "overview")
        # zoom to the last hour, move an hour earlier (nothing), and back
        pg.get_by_role("button", name="1 h", exact=True).click()
        expect(pg).to_have_url(re.compile(r"[?&]span=1"))
        expect(bar).to_be_visible()
        pg.get_by_role("button", name="Earlier").click()
        expect(bar).to_have_count(0)
        pg.get_by_role("button", name="Later").click()
        expect(bar).to_be_visible()
        pg.get_by_role("button", name="Yesterday").click()
        expect(pg).to_have_url(re.compile(r"[?&]day=\d{4}-\d{2}-\d{2}"))
        expect(bar).to_have_count(0)
        pg.go_back()
        expect(bar).to_be_visible()
        # two clicks: the failed run, then its failed step's log
        failed.get_by_role("link", name="flaky").click()
        expect(pg).to_have_url(re.compile(rf"/dags/flaky/runs/{run['dagRunId']}$"))
        pg.locator("tr[data-step=boom]").click()
        pg.get_by_text("stderr", exact=True).click()
        expect(pg.get_by_test_id("log")).to_contain_text("disk quota exceeded")


def test_keyboard_slash_searches_j_k_move_enter_opens(ui: tuple[Daemon, str, Path], page: Page) -> None:
    _, base, _ = ui
    pg = page
    pg.goto(base + "/dags")
    expect(pg.locator("tr[data-dag]")).to_have_count(4)
    pg.keyboard.press("/")
    expect(pg.get_by_label("Search DAGs")).to_be_focused()
    pg.keyboard.type("long")
    expect(pg.locator("tr[data-dag]")).to_have_count(1)
    pg.keyboard.press("Escape")
    pg.keyboard.press("j")
    expect(pg.locator("tr[data-dag=long]")).to_have_attribute("data-active", "true")
    pg.keyboard.press("Enter")
    expect(pg).to_have_url(re.compile(r"/dags/long$"))
    pg.go_back()
    expect(pg).to_have_url(re.compile(r"/dags$"))
    # the runs list: j, j, k lands on the first run; Enter opens that run
    httpx.post(base + "/api/v1/dags/child/start-sync", json={"timeout": 30, "singleton": False}, timeout=40)
    pg.goto(base + "/runs")
    rows = pg.locator("tr[data-run]")
    expect(rows.first).to_be_visible()
    first = rows.first.get_attribute("data-run")
    for key in ("j", "j", "k"):
        pg.keyboard.press(key)
    expect(rows.first).to_have_attribute("data-active", "true")
    pg.keyboard.press("Enter")
    expect(pg).to_have_url(re.compile(rf"/runs/{first}$"))


def test_resource_use_over_time_marks_the_slow_run_and_its_run_page_says_so(
    ui: tuple[Daemon, str, Path], page: Page
) -> None:
    d, base, _ = ui
    text = "params:\n  - PAUSE: '0.05'\nsteps:\n  - id: work\n    run: sleep ${PAUSE}\n"
    with extra_dag(d, "varying", text, lambda: _listed(base, "varying"), lambda: not _listed(base, "varying")):

        def run(pause: str) -> str:
            r = httpx.post(
                base + "/api/v1/dags/varying/start-sync",
                json={"timeout": 30, "singleton": False, "params": f"PAUSE={pause}"},
                timeout=40,
            ).json()["dagRun"]
            assert r["statusLabel"] == "succeeded", r
            return str(r["dagRunId"])

        for _ in range(4):
            run("0.05")
        slow = run("1.5")
        pg = page
        pg.goto(base + "/dags/varying")
        pg.get_by_role("tab", name="Resources").click()
        work = pg.locator("tr[data-resource=work]")
        expect(work.locator(f"[data-outlier='{slow}']")).to_have_count(1)  # the duration chart marks it
        expect(work).to_contain_text("median")
        shot(pg, "dag-resources")
        work.locator(f"[data-outlier='{slow}']").first.click()  # the dot opens that run
        expect(pg).to_have_url(re.compile(rf"/dags/varying/runs/{slow}$"))
        expect(pg.locator("tr[data-step=work] [data-usual]")).to_contain_text("its usual")


AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("path", ["/", "/dags", "/dags/etl", "/runs", "/queues", "/system"])
def test_every_page_has_no_serious_accessibility_violation(
    ui: tuple[Daemon, str, Path], browser: Browser, path: str
) -> None:
    """axe-core (web/'s devDependency, as locked) on each page, light and dark: nothing serious
    or critical (contrast, names of controls, landmarks, ARIA)."""
    _, base, _ = ui
    for scheme in ("light", "dark"):
        ctx = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
        page = ctx.new_page()
        try:
            page.goto(base + path)
            expect(page.locator("h2").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.add_script_tag(path=str(AXE))
            found = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
                " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
            )
            assert found == [], (scheme, found)
        finally:
            ctx.close()


def test_spec_editor_checks_as_you_type_marks_the_line_and_completes_keys(
    ui: tuple[Daemon, str, Path], page: Page
) -> None:
    d, base, _ = ui
    before = (d.root / "dags" / "long.yaml").read_text()
    pg = page
    pg.goto(base + "/dags/long")
    pg.get_by_role("tab", name="Spec").click()
    expect(pg.locator(".cm-content .cm-line").first).to_be_visible()
    assert pg.locator(".cm-content span[class]").count() > 0  # highlighted YAML, not plain text
    pg.get_by_role("button", name="Edit").click()
    editor = pg.get_by_label("DAG YAML")
    editor.fill("steps:\n  - id: a\n    run: 'true'\n  - id: b\n    depends: nowhere\n    run: 'true'")
    # dagd validates as you type (no button): the error is listed and marked in the gutter
    expect(pg.get_by_test_id("spec-errors")).to_contain_text("nowhere")
    expect(pg.locator(".cm-lint-marker-error")).to_have_count(1)
    marked = pg.locator(".cm-gutter-lint .cm-gutterElement:has(.cm-lint-marker-error)")
    line_no = pg.locator(".cm-lineNumbers .cm-gutterElement").filter(has_text=re.compile(r"^4$"))
    assert abs(marked.bounding_box()["y"] - line_no.bounding_box()["y"]) < 2  # on step b's line (4)
    # completion of dagd's step keys on an indented line
    editor.press("Control+End")
    editor.press("Enter")
    pg.keyboard.type("retr")
    option = pg.locator(".cm-tooltip-autocomplete li", has_text="retry_policy")
    expect(option).to_have_count(1)
    option.click()
    expect(editor).to_contain_text("retry_policy: ")
    shot(pg, "spec-editor")
    pg.get_by_role("button", name="Cancel").click()
    assert (d.root / "dags" / "long.yaml").read_text() == before  # nothing saved
