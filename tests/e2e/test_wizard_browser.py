"""The wizard in a real browser: Data, then Backbone, then Layers with "fine-tune top N"."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

#: The first paint loads the chart and table components, which takes seconds here, and
#: other tests may leave a training job running on the same CPU cores.
TIMEOUT_MS = 60_000
#: The first visit to Layers lists the blocks in a TensorFlow subprocess.
BLOCKS_TIMEOUT_MS = 120_000


def _wait_until_settled(page: Page, timeout: int = TIMEOUT_MS) -> None:
    # A click starts a script run a moment later; settled means it ran and stopped.
    page.wait_for_timeout(300)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout
    )


def _nav(page: Page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    _wait_until_settled(page)


@pytest.mark.e2e
def test_data_then_backbone_then_layers_fine_tuning_the_top_blocks(
    page: Page, app_url: str
) -> None:
    page.goto(app_url)
    _wait_until_settled(page)
    expect(page.get_by_role("heading", name="sample_shapes.zip")).to_be_visible(timeout=TIMEOUT_MS)

    _nav(page, "Backbone")

    expect(page.get_by_role("heading", name="Backbone", exact=True)).to_be_visible()
    expect(page.get_by_role("combobox", name="Backbone")).to_have_value(
        "MobileNetV2 · MobileNet · 2.3 M parameters"
    )
    expect(page.get_by_role("spinbutton", name="Image size (pixels per side)")).to_have_value("64")
    assert re.search(r"[?&]backbone=mobilenet_v2\b", page.url)

    page.get_by_role("link", name="Next: Layers").click()
    _wait_until_settled(page, BLOCKS_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Blocks, input side first")).to_be_visible(
        timeout=BLOCKS_TIMEOUT_MS
    )

    page.get_by_text("Fine-tune top N", exact=True).click()
    _wait_until_settled(page)

    expect(page.get_by_text("Blocks that train, counted from the top")).to_be_visible()
    strip = page.locator('[data-testid="stPlotlyChart"]')
    expect(strip).to_have_count(1)
    expect(strip.locator(".bars .point")).to_have_count(19)
    sidebar = page.locator('[data-testid="stSidebarUserContent"]')
    expect(sidebar.get_by_text("Fine-tune top 2 · 2 of 19 blocks trainable")).to_be_visible()
    expect(sidebar.get_by_text("Layers · done")).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
