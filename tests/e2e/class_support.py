"""Steps of a class in a real browser, shared by the class browser test and ``bench class``.

A student joins with a name and the class code, picks the smallest setting that trains
(the bundled sample, MobileNetV3Small from scratch, tiny images, few epochs) and starts a
run; the teacher signs in with the password. Plain functions over a Playwright `Page`, in
the labels the sign-in form shows (**Your name**, **Class code**, **Join class**,
**Teacher password**, **Sign in as teacher**).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from bench.app_server import serve_app
from tests.e2e.browser_support import nav, wait_until_settled

#: The class's code and the teacher's password on the servers these steps drive.
CLASS_CODE = "MAPLE-42"
TEACHER_PASSWORD = "staffroom-key"
#: How long one step may wait for the app (a script run, a click's target): generous,
#: since a class's server serves up to 30 tabs on two busy cores.
STEP_MS = 60_000
#: The sample's first ingest runs in a background process (Python and Pillow imports, 320
#: images), which a busy machine can stretch to a minute.
SAMPLE_MS = 120_000
#: How long a class server may take to start serving.
SERVER_START_S = 60
#: The smallest backbone: the quickest to build and compile, so a class's runs stay short.
TINY_BACKBONE = re.compile(r"^MobileNetV3Small ")
RUN_IN_URL = re.compile(r"[?&]run=(\d{8}-\d{6}-[0-9a-f]{6})\b")
#: Records, in the page, when each epoch's point of the "training" curve first shows:
#: ``window.__tlEpochSeen[epoch] = Date.now()``, checked every 100 ms. Recording in the
#: page keeps the measurement independent of how busy the script driving the tabs is.
_RECORD_EPOCHS = """() => {
  if (window.__tlEpochSeen) return;
  window.__tlEpochSeen = {};
  setInterval(() => {
    for (const plot of document.querySelectorAll('.js-plotly-plot')) {
      const trace = (plot.data || []).find((t) => t.name === 'training');
      if (!trace) continue;
      for (const epoch of trace.x) {
        if (!(epoch in window.__tlEpochSeen)) window.__tlEpochSeen[epoch] = Date.now();
      }
    }
  }, 100);
}"""
_TRAINING_POINTS = """() => {
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const trace = (plot.data || []).find((t) => t.name === 'training');
    if (trace) return trace.x.length;
  }
  return 0;
}"""


def class_env(code: str = CLASS_CODE, password: str = TEACHER_PASSWORD) -> dict[str, str]:
    """The server environment that turns class mode on.

    Example:
        >>> class_env()["TL_CLASS_CODE"]
        'MAPLE-42'
    """
    return {"TL_CLASS_CODE": code, "TL_TEACHER_PASSWORD": password}


@contextlib.contextmanager
def serve_class(home: Path, log: Path) -> Iterator[str]:
    """Serve the app in class mode (`class_env`) from `home`, its output in `log`; yield
    its URL. A server that does not start fails the test that needs it.

    Example:
        >>> with serve_class(home, log) as url:  # doctest: +SKIP
        ...     join(page, url, "Ada")
    """
    with contextlib.ExitStack() as stack:
        try:
            url, _pid = stack.enter_context(
                serve_app(home, log, env=class_env(), start_seconds=SERVER_START_S)
            )
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


def fill_join_form(page: Page, name: str, code: str) -> None:
    """Type `name` and `code` into the sign-in form and click **Join class**."""
    page.get_by_label("Your name").fill(name, timeout=STEP_MS)
    page.get_by_label("Class code").fill(code, timeout=STEP_MS)
    page.get_by_role("button", name="Join class").click(timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)


def join(page: Page, url: str, name: str, code: str = CLASS_CODE) -> None:
    """Open the app as a new student and join the class as `name`; wait for the wizard.

    The Data page then chooses the bundled sample; this waits until it is shown.
    """
    page.goto(url, timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)
    fill_join_form(page, name, code)
    sidebar = page.get_by_test_id("stSidebarUserContent")
    expect(sidebar.get_by_text(name, exact=False).first).to_be_visible(timeout=STEP_MS)
    expect(page.get_by_role("heading", name="sample_shapes.zip")).to_be_visible(timeout=SAMPLE_MS)
    wait_until_settled(page, STEP_MS)


def sign_in_as_teacher(page: Page, url: str, password: str = TEACHER_PASSWORD) -> None:
    """Open the app in a fresh tab and sign in as the teacher."""
    page.goto(url, timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)
    page.get_by_label("Teacher password").fill(password, timeout=STEP_MS)
    page.get_by_role("button", name="Sign in as teacher").click(timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)


def choose_tiny_model(page: Page, image_size: int = 32) -> None:
    """On the Backbone page: MobileNetV3Small, random weights, `image_size` pixels."""
    nav(page, "Backbone", STEP_MS)
    picker = page.get_by_role("combobox", name="Backbone")
    picker.click(timeout=STEP_MS)
    page.get_by_role("option", name=TINY_BACKBONE).click(timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)
    expect(picker).to_have_value(TINY_BACKBONE, timeout=STEP_MS)
    radio = page.get_by_test_id("stRadioGroup").get_by_text("From scratch", exact=True)
    radio.click(timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)
    set_number(page, "Image size (pixels per side)", image_size)


def open_train_form(page: Page, epochs: int) -> None:
    """Open the Train page with its form showing and `epochs` set, ready to start."""
    nav(page, "Train", STEP_MS)
    another = page.get_by_test_id("stExpander").filter(has_text="Train another run")
    if another.count():
        # With a run on show the form is folded under it.
        another.get_by_text("Train another run").click(timeout=STEP_MS)
    set_number(page, "Epochs", epochs)


def start_run(page: Page) -> str:
    """Click **Start training** on an open Train form; return the new run's id."""
    page.get_by_role("button", name="Start training").click(timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)
    page.wait_for_url(RUN_IN_URL, timeout=STEP_MS)
    found = RUN_IN_URL.search(page.url)
    assert found, page.url
    return found.group(1)


def set_number(page: Page, label: str, value: int) -> None:
    """Type `value` into the number input `label` and wait for the rerun."""
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value), timeout=STEP_MS)
    box.press("Enter", timeout=STEP_MS)
    wait_until_settled(page, STEP_MS)


def record_epoch_times(page: Page) -> None:
    """Start recording, in the page, when each epoch's point first shows (see `seen_epochs`)."""
    page.evaluate(_RECORD_EPOCHS)


def seen_epochs(page: Page) -> dict[int, float]:
    """Epoch number → the time (seconds since the epoch) the page first showed its point."""
    seen = page.evaluate("() => window.__tlEpochSeen || {}")
    return {int(epoch): millis / 1000 for epoch, millis in seen.items()}


def training_points(page: Page) -> int:
    """How many epochs the page's training curve shows now (0 without a curve)."""
    return int(page.evaluate(_TRAINING_POINTS))


def exceptions_on(page: Page) -> int:
    """How many Streamlit exception boxes the page shows."""
    return page.locator('[data-testid="stException"]').count()


def started_at(home: Path, run_id: str) -> float | None:
    """When the run's worker started it (its ``status.json``), ``None`` before that."""
    from tl_core.jobs.runs import read_status, run_path

    status = read_status(run_path(run_id, home))
    return status.started_at if status is not None else None
