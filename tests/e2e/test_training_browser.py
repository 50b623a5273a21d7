"""Training in a real browser with a real worker: upload, pick a model, train, watch, stop;
then evaluate the stopped run and open Compare.

The server starts its own scheduler, so "Start training" spawns a real worker process
(TensorFlow included): 24 images of 32 px and MobileNetV3Small from scratch keep it to
about a minute on two cores, most of it importing TensorFlow and compiling the model.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.browser_support import TIMEOUT_MS, nav, wait_until_settled

#: From "Start training" to the first epoch's point: the worker imports TensorFlow,
#: builds the model and trains one epoch (which compiles it): 50 s on two idle cores.
FIRST_EPOCH_MS = 150_000
#: From "Stop" to the run's final state: the current batch ends and the model is saved.
STOP_MS = 60_000
#: Later epochs take a fraction of a second here: plenty, so that Stop finds it training.
EPOCHS = 200
#: From opening Evaluate to its metrics: a background process imports TensorFlow, loads
#: the model and predicts the validation images.
EVALUATION_MS = 120_000
_RUN_IN_URL = re.compile(r"[?&]run=(\d{8}-\d{6}-[0-9a-f]{6})\b")


def _shapes_zip(path: Path) -> Path:
    """3 classes × 8 images of 32 px: a red square, a green bar, a blue dot, each moved."""
    with zipfile.ZipFile(path, "w") as archive:
        for label, colour, box in (
            ("square", "red", (8, 8, 24, 24)),
            ("bar", "green", (4, 12, 28, 20)),
            ("dot", "blue", (12, 12, 20, 20)),
        ):
            for index in range(8):
                image = Image.new("RGB", (32, 32), "white")
                shifted = (box[0] + index % 3, box[1] + index // 3, box[2] + index % 3, box[3])
                image.paste(colour, shifted)
                png = io.BytesIO()
                image.save(png, format="PNG")
                archive.writestr(f"shapes/{label}/{index}.png", png.getvalue())
    return path


def _set_number(page: Page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    wait_until_settled(page)


@pytest.mark.e2e
def test_a_run_trains_live_stops_and_is_evaluated_and_compared(
    page: Page, app_url: str, tmp_path: Path
) -> None:
    page.goto(app_url)
    wait_until_settled(page)
    page.set_input_files("input[type=file]", _shapes_zip(tmp_path / "shapes.zip"))
    expect(page.get_by_role("heading", name="shapes.zip")).to_be_visible(timeout=TIMEOUT_MS)
    wait_until_settled(page)

    nav(page, "Backbone")
    # The smallest backbone: its first epoch (which compiles the model) is the quickest.
    picker = page.get_by_role("combobox", name="Backbone")
    picker.click()
    page.get_by_role("option", name=re.compile(r"^MobileNetV3Small ")).click()
    wait_until_settled(page)
    expect(picker).to_have_value(re.compile(r"^MobileNetV3Small "))
    page.get_by_test_id("stRadioGroup").get_by_text("From scratch", exact=True).click()
    wait_until_settled(page)
    _set_number(page, "Image size (pixels per side)", 32)

    nav(page, "Train")
    _set_number(page, "Epochs", EPOCHS)
    page.get_by_role("button", name="Start training").click()
    wait_until_settled(page)
    run = _RUN_IN_URL.search(page.url)
    assert run, page.url
    main = page.get_by_test_id("stMainBlockContainer")
    expect(main.get_by_text(f"Run {run.group(1)}")).to_be_visible()

    # The live view redraws every second; the first epoch's point lands in trace 0.
    page.wait_for_function(
        "() => { const g = document.querySelector('.js-plotly-plot');"
        " return !!(g && g.data && g.data[0].x.length >= 1); }",
        timeout=FIRST_EPOCH_MS,
    )
    main.get_by_role("button", name="Stop", exact=True).click()

    expect(main.get_by_text(re.compile(r"^Stopped: "))).to_be_visible(timeout=STOP_MS)
    sidebar = page.locator('[data-testid="stSidebarUserContent"]')
    expect(sidebar.get_by_text(f"Run {run.group(1)} · stopped")).to_be_visible()

    # The stopped run kept its model: a background process evaluates it (the server never
    # loads TensorFlow), then Compare offers it as the base of a freeze-depth ladder.
    nav(page, "Evaluate")
    expect(main.get_by_role("combobox", name="Trained run")).to_have_value(
        re.compile(f"^{run.group(1)} ")
    )
    accuracy = main.get_by_test_id("stMetric").filter(has_text="Accuracy").first
    expect(accuracy).to_contain_text("%", timeout=EVALUATION_MS)
    expect(main.locator(".js-plotly-plot")).to_have_count(1)  # the confusion matrix
    expect(main.get_by_role("heading", name="Per class")).to_be_visible()

    nav(page, "Compare")
    expect(main.get_by_text("Comparing needs two runs")).to_be_visible()
    expect(main.get_by_role("heading", name="Freeze-depth ladder")).to_be_visible()
    expect(main.get_by_role("button", name=re.compile(r"^Queue \d+ runs$"))).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
