"""The wizard in a real browser: Data, then Backbone, then Layers with "fine-tune top N"."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser_support import nav, wait_until_settled

#: The first paint loads the chart and table components, which takes seconds here, and
#: other tests may leave a training job running on the same CPU cores.
TIMEOUT_MS = 60_000
#: The first visit to Layers lists the blocks in a TensorFlow subprocess.
BLOCKS_TIMEOUT_MS = 120_000


@pytest.mark.e2e
def test_data_then_backbone_then_layers_fine_tuning_the_top_blocks(
    page: Page, app_url: str
) -> None:
    page.goto(app_url)
    wait_until_settled(page, TIMEOUT_MS)
    expect(page.get_by_role("heading", name="sample_shapes.zip")).to_be_visible(timeout=TIMEOUT_MS)

    nav(page, "Backbone", TIMEOUT_MS)

    expect(page.get_by_role("heading", name="Backbone", exact=True)).to_be_visible()
    expect(page.get_by_role("combobox", name="Backbone")).to_have_value(
        "MobileNetV2 · MobileNet · 2.3 M parameters"
    )
    expect(page.get_by_role("spinbutton", name="Image size (pixels per side)")).to_have_value("64")
    assert re.search(r"[?&]backbone=mobilenet_v2\b", page.url)

    page.get_by_role("link", name="Next: Layers").click()
    wait_until_settled(page, BLOCKS_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Blocks, input side first")).to_be_visible(
        timeout=BLOCKS_TIMEOUT_MS
    )

    page.get_by_text("Fine-tune top N", exact=True).click()
    wait_until_settled(page, TIMEOUT_MS)

    expect(page.get_by_text("Blocks that train, counted from the top")).to_be_visible()
    strip = page.locator('[data-testid="stPlotlyChart"]')
    expect(strip).to_have_count(1)
    expect(strip.locator(".bars .point")).to_have_count(19)
    sidebar = page.locator('[data-testid="stSidebarUserContent"]')
    expect(sidebar.get_by_text("Fine-tune top 2 · 2 of 19 blocks trainable")).to_be_visible()
    expect(sidebar.get_by_text("Layers · done")).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
