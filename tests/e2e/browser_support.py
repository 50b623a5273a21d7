"""Steps the browser tests share: wait for a script run to settle, follow a sidebar link.

Plain functions, importable by any browser test (the fixtures live in ``conftest.py``).
"""

from __future__ import annotations

from playwright.sync_api import Page

#: The first paint loads the chart, table and image components, which takes seconds here.
TIMEOUT_MS = 20_000


def wait_until_settled(page: Page, timeout: int = TIMEOUT_MS) -> None:
    """Wait until the app's script has run and stopped after the last interaction."""
    # A click starts a script run a moment later; settled means it ran and stopped.
    page.wait_for_timeout(300)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout
    )


def nav(page: Page, title: str, timeout: int = TIMEOUT_MS) -> None:
    """Open the page `title` through its sidebar link, and wait until it has run."""
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    wait_until_settled(page, timeout)
