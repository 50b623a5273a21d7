"""A real server and a real browser for the end-to-end tests.

The server is started once per session (``streamlit run app.py`` on a free port, with its
own ``TL_HOME``) and killed with its whole process group at the end. Its log is printed
when a test fails, because a browser test that fails usually failed on the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"streamlit was not healthy after {SERVER_START_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the app server writes its output to."""
    return tmp_path_factory.mktemp("server") / "streamlit.log"


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory, server_log: Path) -> Iterator[str]:
    """Start the app on a free port with a fresh ``TL_HOME``; yield its URL."""
    port = _free_port()
    env = os.environ | {"TL_HOME": str(tmp_path_factory.mktemp("tl_home"))}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless=true",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
    ]
    with server_log.open("wb") as log:
        # A new session makes the server the leader of its own process group, so one
        # signal ends it and anything it started.
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://localhost:{port}"
    try:
        _wait_until_healthy(url, server, server_log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Attach the server log to the report of a failed test that used the server."""
    report = yield
    log = item.funcargs.get("server_log") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(log, Path) and log.is_file():
        report.sections.append(("streamlit server log", log.read_text(errors="replace")))
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """A headless Chromium driven by Playwright: Debian's build, since Playwright cannot
    download its own here. Missing, it fails the run on CI and skips it elsewhere."""
    if not CHROMIUM.is_file():
        reason = f"no browser at {CHROMIUM}; install it with `apt-get install chromium`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (its own cookies and storage), closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()
