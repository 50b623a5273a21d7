"""A written report opened from disk in a real browser with the network blocked.

Every chart must draw and every picture load from the file alone, no request may fail
or leave the file, and hostile names must show as text without running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, Route, expect

from tests.unit.analysis.report_helpers import HOSTILE, fabricate_runs, sample_dataset
from tl_core.analysis.report import write_report

pytestmark = pytest.mark.e2e

#: Drawing a dozen charts from a 4.8 MB script takes a few seconds on a busy machine.
TIMEOUT_MS = 30_000


def _block_the_network(page: Page) -> list[str]:
    """Abort every request that is not the file itself (or a picture inside it); return
    the list the aborted URLs are added to."""
    left: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(("file://", "data:")):
            route.continue_()
        else:
            left.append(url)
            route.abort()

    page.route("**/*", handle)
    return left


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A report of two fabricated runs whose class and dataset names are `HOSTILE`."""
    dataset = sample_dataset(tmp_path, classes=("cat", "dog", "fox"))
    ids = fabricate_runs(dataset, (0.81, 0.93), owner=HOSTILE)
    return write_report(ids, tmp_path / "report.html")


def test_a_report_opened_offline_draws_every_chart_and_picture(page: Page, report: Path) -> None:
    left = _block_the_network(page)
    failed: list[str] = []
    dialogs: list[str] = []
    page.on("requestfailed", lambda request: failed.append(_describe(request)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(report.as_uri(), wait_until="load")

    charts = page.locator(".chart").count()
    assert charts > 10
    expect(page.locator(".js-plotly-plot")).to_have_count(charts, timeout=TIMEOUT_MS)
    drawn = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".filter(plot => plot.querySelector('svg.main-svg')).length"
    )
    assert drawn == charts
    widths = page.evaluate("() => Array.from(document.images).map(image => image.naturalWidth)")
    assert len(widths) >= 2 * 3 and all(width > 0 for width in widths)
    expect(page.get_by_text(HOSTILE).first).to_be_visible()
    assert (left, failed, dialogs) == ([], [], [])


def test_hostile_names_show_as_text_in_headings_tables_and_chart_legends(
    page: Page, report: Path
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _block_the_network(page)

    page.goto(report.as_uri(), wait_until="load")

    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=TIMEOUT_MS)
    assert page.locator("td", has_text=HOSTILE).count() >= 1  # the per-class table
    assert page.locator(".legendtext", has_text=HOSTILE).count() >= 1  # embedding legends
    assert page.locator("header", has_text=HOSTILE).count() == 1  # dataset name and owner
    assert dialogs == []


def _describe(request: Request) -> str:
    return f"{request.url}: {request.failure}"
