"""The Data page in a real browser: the sample on arrival, then an uploaded zip."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]
#: The first paint loads the chart and image components, which takes seconds here.
TIMEOUT_MS = 20_000
#: An upload is read by a background process, whose start (Python and Pillow imports)
#: alone can take seconds on a busy machine; the page polls it until the dataset is stored.
INGEST_TIMEOUT_MS = 60_000


def _wait_until_settled(page: Page) -> None:
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=TIMEOUT_MS
    )


def _sample_tabs() -> list[str]:
    """The gallery tabs the sample should get: ``"circle (80)"``, from the zip's folders."""
    with zipfile.ZipFile(ROOT / "assets" / "sample_shapes.zip") as archive:
        counts = Counter(
            PurePosixPath(name).parent.name for name in archive.namelist() if name.endswith(".png")
        )
    return [f"{label} ({count})" for label, count in sorted(counts.items())]


def _fruit_zip(path: Path) -> Path:
    """Write a zip with 12 apples and 9 pears (tiny PNGs, each one different)."""
    with zipfile.ZipFile(path, "w") as archive:
        for label, count, colour in (("apple", 12, "red"), ("pear", 9, "green")):
            for index in range(count):
                image = Image.new("RGB", (32, 32), colour)
                image.putpixel((index, index), (0, 0, 255))
                png = io.BytesIO()
                image.save(png, format="PNG")
                archive.writestr(f"fruit/{label}/{index:02d}.png", png.getvalue())
    return path


@pytest.mark.e2e
def test_the_sample_shows_on_arrival_and_an_upload_replaces_it(
    page: Page, app_url: str, tmp_path: Path
) -> None:
    page.goto(app_url)
    _wait_until_settled(page)
    expect(page.get_by_role("heading", name="sample_shapes.zip")).to_be_visible(
        timeout=INGEST_TIMEOUT_MS
    )
    for tab in _sample_tabs():
        expect(page.get_by_role("tab", name=tab)).to_be_visible(timeout=TIMEOUT_MS)

    page.set_input_files("input[type=file]", _fruit_zip(tmp_path / "fruit.zip"))

    expect(page.get_by_role("heading", name="fruit.zip")).to_be_visible(timeout=INGEST_TIMEOUT_MS)
    _wait_until_settled(page)
    expect(page.get_by_role("tab", name="apple (12)")).to_be_visible()
    expect(page.get_by_role("tab", name="pear (9)")).to_be_visible()
    expect(page.get_by_text("Tiny dataset: 21 images in all")).to_be_visible()
    assert "dataset=" in page.url
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
