"""Presentation mode in a real browser: full-screen slides moved with the arrow keys.

The server here is the test's own, over a workspace holding two finished runs written by
hand (nothing trains), so that the slides have something to show.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from bench.app_server import serve_app
from tests.app.run_support import fabricate_run
from tests.e2e.browser_support import TIMEOUT_MS, wait_until_settled

pytestmark = pytest.mark.e2e

BASE_RUN = "20261120-090000-aaaaaa"
TUNED_RUN = "20261121-090000-bbbbbb"


@pytest.fixture(scope="module")
def present_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over two finished runs; yield the address of their presentation."""
    home = tmp_path_factory.mktemp("present_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_HOME", str(home))
        fabricate_run(
            BASE_RUN,
            state="completed",
            val_accuracies=(0.6, 0.7),
            config={"weights": "imagenet", "freeze": "feature-extraction"},
        )
        fabricate_run(
            TUNED_RUN,
            state="completed",
            val_accuracies=(0.7, 0.9),
            config={"weights": "imagenet", "freeze": "fine-tune", "unfreeze_last": 3},
        )
    log = tmp_path_factory.mktemp("present_server") / "streamlit.log"
    with contextlib.ExitStack() as stack:
        try:
            url, _pid = stack.enter_context(serve_app(home, log, start_seconds=30))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield f"{url}/compare?present=1&runs={BASE_RUN},{TUNED_RUN}"


def _counter(page: Page) -> str:
    """The "3 / 9" in the corner."""
    text = page.locator(".st-key-present_controls").inner_text()
    found = re.search(r"\d+ / \d+", text)
    assert found is not None, text
    return found.group(0)


def _heading(page: Page) -> str:
    return page.locator(".st-key-present_slide h1").first.inner_text()


def _press(page: Page, key: str, times: int = 1) -> None:
    for _ in range(times):
        page.keyboard.press(key)
        wait_until_settled(page)


def test_the_arrow_keys_step_through_the_slides_and_a_reload_keeps_the_place(
    page: Page, present_url: str
) -> None:
    page.goto(present_url)
    wait_until_settled(page)

    expect(page.locator(".st-key-present_slide h1").first).to_contain_text(
        "What changes when", timeout=TIMEOUT_MS
    )
    expect(page.locator('[data-testid="stSidebar"]')).to_be_hidden()
    expect(page.locator('[data-testid="stHeader"]')).to_be_hidden()
    expect(page.locator('[data-testid="stSidebarNavLink"]')).to_have_count(0)
    first, count = _counter(page).split(" / ")
    assert first == "1"
    title = _heading(page)

    _press(page, "ArrowRight", 3)

    expect(page.locator(".st-key-present_controls")).to_contain_text(f"4 / {count}")
    assert _heading(page) != title
    fourth = _heading(page)

    _press(page, "ArrowLeft")

    expect(page.locator(".st-key-present_controls")).to_contain_text(f"3 / {count}")
    assert _heading(page) not in (title, fourth)
    third = _heading(page)
    assert "slide=3" in page.url

    page.reload()
    wait_until_settled(page)

    expect(page.locator(".st-key-present_controls")).to_contain_text(f"3 / {count}")
    assert _heading(page) == third


def test_the_last_slide_stops_at_the_end(page: Page, present_url: str) -> None:
    page.goto(f"{present_url}&slide=99")
    wait_until_settled(page)
    expect(page.locator(".st-key-present_slide h1").first).to_have_text(
        "Thank you", timeout=TIMEOUT_MS
    )
    counter = _counter(page)

    _press(page, "ArrowRight")

    assert _counter(page) == counter
    expect(page.locator(".st-key-present_slide h1").first).to_have_text("Thank you")
