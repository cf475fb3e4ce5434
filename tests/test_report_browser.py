"""The report in a real headless browser (Debian's chromium), driven over DevTools.

Each page of a report made from a synthetic history with hostile names (and
of one made from a real scan: histograms and top directories too) is
loaded from file:// and checked as a person would see it: no console errors
or exceptions, no network request but the page file itself (no script,
font, image or style sheet fetched from anywhere), and every chart an
<svg> with a real size and drawn shapes inside. A screenshot of each page
goes to /tmp (never the repository) to be looked at.

chromium comes from scripts/test.sh (apt); without it the test is skipped,
except under CI=true where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_report import make_real_tree, optional_report, read_pages, store_history

websocket = pytest.importorskip("websocket")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]
DEADLINE = 60.0  # seconds for the browser to start, and for each page to load
SCREENSHOTS = Path(tempfile.gettempdir()) / "dkm-report-screenshots"

# Every chart: its size on the page and how many shapes it draws.
CHARTS_JS = """
JSON.stringify(Array.from(document.querySelectorAll('.chart svg')).map(svg => {
  const box = svg.getBoundingClientRect();
  const shapes = Array.from(svg.querySelectorAll('path, use, rect, line, polyline'))
    .filter(e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; });
  return {width: box.width, height: box.height, shapes: shapes.length};
}))
"""


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (scripts/test.sh installs Debian's)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class DevTools:
    """One DevTools websocket: commands by id, every event kept in order."""

    def __init__(self, url: str) -> None:
        # No Origin header: chromium refuses websocket clients that send one it does not know.
        self.socket = websocket.create_connection(url, timeout=DEADLINE, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == number:
                assert "error" not in reply, (method, reply["error"])
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already received or still to come)."""
        end = time.monotonic() + DEADLINE
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < end:
            event = json.loads(self.socket.recv())
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise AssertionError(f"no {method} within {DEADLINE} s")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """A fresh headless chromium (empty profile), its browser-level DevTools socket."""
    profile = tmp_path / "profile"
    profile.mkdir()
    process = subprocess.Popen(
        [_chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # chromium writes the port it chose (and the browser's path) once it listens.
        active = profile / "DevToolsActivePort"
        end = time.monotonic() + DEADLINE
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            assert process.poll() is None, f"chromium exited with {process.returncode}"
            assert time.monotonic() < end, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        tools = DevTools(f"ws://127.0.0.1:{port}{path}")
        try:
            yield tools
        finally:
            tools.socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load(tools: DevTools, page: Path) -> tuple[str, list[dict[str, Any]]]:
    """Open ``page`` in a new tab; its session id and the events up to the load event."""
    target = tools.send("Target.createTarget", url="about:blank")["targetId"]
    session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        tools.send(f"{domain}.enable", session)
    # An administrator's window, not headless chromium's 800 x 600 default.
    tools.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=1280,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    tools.events.clear()
    tools.send("Page.navigate", session, url=page.as_uri())
    tools.wait_for("Page.loadEventFired")
    return session, [e for e in tools.events if e.get("sessionId") == session]


def problems(events: list[dict[str, Any]], page: Path) -> list[str]:
    """Console errors, exceptions and any network request but the page itself."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent" and params["request"]["url"] != page.as_uri():
            found.append(f"request: {params['request']['url']}")
        elif method == "Network.loadingFailed":
            found.append(f"failed: {params.get('errorText')}")
    return found


def check_pages(browser: DevTools, out: Path) -> int:
    """Load index.html and every page it links to; the number of charts seen."""
    _index, pages = read_pages(out)
    SCREENSHOTS.mkdir(exist_ok=True)
    charts_seen = 0
    for name in ["index.html", *pages]:
        page = out / name
        session, events = load(browser, page)
        assert problems(events, page) == [], name
        requested = [e for e in events if e.get("method") == "Network.requestWillBeSent"]
        assert len(requested) == 1  # the page itself: it was really watched
        answer = browser.send("Runtime.evaluate", session, expression=CHARTS_JS, returnByValue=True)
        charts = json.loads(answer["result"]["value"])
        assert len(charts) == page.read_text().count('<div class="chart">'), name
        for chart in charts:
            assert chart["width"] > 100 and chart["height"] > 50, (name, chart)
            assert chart["shapes"] > 10, (name, chart)
        charts_seen += len(charts)
        # No script ran, not even a planted one: the hostile <script> user is text.
        title = browser.send("Runtime.evaluate", session, expression="document.title")
        assert "<script" not in title["result"]["value"]
        shot = browser.send(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        (SCREENSHOTS / f"{Path(name).stem}.png").write_bytes(base64.b64decode(shot["data"]))
        browser.events.clear()
    return charts_seen


def test_every_page_loads_offline_cleanly_with_drawn_charts(dkm_factory, sqlite_url, browser):
    store_history(sqlite_url)
    dkm = dkm_factory(sqlite_url)
    out = Path(dkm.state_dir) / "report"
    made = dkm("report", "--output", str(out))
    assert made.returncode == 0, made.stderr
    # alpha: disk use, top users, growth; beta: disk use
    assert check_pages(browser, out) == 4


def test_histograms_and_top_directories_draw_too(tmp_path, browser):
    from dkmonitor.report.render import write_report

    write_report(optional_report(), tmp_path / "optional")
    assert check_pages(browser, tmp_path / "optional") == 4  # disk, top users, 2 histograms


def test_a_real_scan_draws_its_histograms(
    dkm_factory, sqlite_url, scan_target, requires_root, browser
):
    make_real_tree(scan_target)
    dkm = dkm_factory(sqlite_url)
    for _ in range(2):
        done = dkm("run", "path", str(scan_target.root), "--old-days", "90")
        assert done.returncode == 0, done.stderr
    out = Path(dkm.state_dir) / "report"
    made = dkm("report", "--output", str(out))
    assert made.returncode == 0, made.stderr
    _index, pages = read_pages(out)
    (page,) = pages.values()
    assert "File sizes" in page and "By old files&#39; size" in page
    assert check_pages(browser, out) == 4  # disk use, top users, sizes, ages
