"""A real server and a real browser for the end-to-end tests.

The server is started once per session (``streamlit run app.py`` on a free port, with its
own ``TL_HOME``) and killed with its whole process group at the end. Its log is printed
when a test fails, because a browser test that fails usually failed on the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from bench.app_server import CHROMIUM, CHROMIUM_ARGS, serve_app

SERVER_START_SECONDS = 30


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the app server writes its output to."""
    return tmp_path_factory.mktemp("server") / "streamlit.log"


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory, server_log: Path) -> Iterator[str]:
    """Start the app on a free port with a fresh ``TL_HOME``; yield its URL."""
    home = tmp_path_factory.mktemp("tl_home")
    with contextlib.ExitStack() as stack:
        try:
            url, _pid = stack.enter_context(
                serve_app(home, server_log, start_seconds=SERVER_START_SECONDS)
            )
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


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
    download its own here. Missing, it fails the run: a browser test never skips (without
    a browser, `make test-fast` leaves these tests out)."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"no browser at {CHROMIUM}; install it with `apt-get install chromium`, or run "
            "`make test-fast`, which leaves out the browser tests"
        )
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
