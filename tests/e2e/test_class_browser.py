"""A class of four in real browsers: joining, names, reloads, fair turns, and whose run is whose.

The server runs in class mode (its own ``TL_HOME``, a class code and a teacher password)
with its real scheduler, so the runs train in real workers, one at a time. The teacher's
pause (set through the core, as the Class page does) holds the queue while the four
students queue their runs, so that the start order is the scheduler's fair order and not
the order of the clicks. Each run is MobileNetV3Small from scratch on the sample at 32 px
for one epoch: about half a minute on two idle cores, most of it compiling the model, so
the test takes about four minutes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.browser_support import nav, wait_until_settled
from tests.e2e.class_support import (
    CLASS_CODE,
    STEP_MS,
    choose_tiny_model,
    exceptions_on,
    fill_join_form,
    join,
    open_train_form,
    serve_class,
    sign_in_as_teacher,
    start_run,
    started_at,
)
from tl_core.classroom import Identity, update_class_settings

#: The students; the first queues two runs, the others one each.
NAMES = ("Ada", "Ben", "Cleo", "Dev")
#: A worker's cold start (TensorFlow's import) plus four runs ahead of the last one, each
#: about half a minute on two idle cores; generous, within the suite's 600 s per test.
ALL_STARTED_S = 420


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class server's log (conftest attaches it to the report of a failed test)."""
    return tmp_path_factory.mktemp("class_server") / "streamlit.log"


@pytest.fixture(scope="module")
def class_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class server's ``TL_HOME``, read by the tests for run status files."""
    return tmp_path_factory.mktemp("class_home")


@pytest.fixture(scope="module")
def class_url(class_home: Path, server_log: Path) -> Iterator[str]:
    """Serve the app in class mode; yield its URL."""
    with serve_class(class_home, server_log) as url:
        yield url


def _tab(browser: Browser) -> Page:
    """A tab in a browser context of its own: its own cookies, so its own person."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(STEP_MS)
    return context.new_page()


def _refused(page: Page, message: re.Pattern[str]) -> None:
    """The sign-in shows `message` and stays: no wizard behind it."""
    expect(page.get_by_text(message)).to_be_visible(timeout=STEP_MS)
    expect(page.get_by_role("button", name="Join class")).to_be_visible()
    expect(page.get_by_test_id("stSidebarNavLink")).to_have_count(0)


def _listed_runs(page: Page) -> set[str]:
    """The run ids the Runs page offers in its "Open a run" picker."""
    nav(page, "Runs", STEP_MS)
    page.get_by_role("combobox", name="Open a run").click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return {option.split(" · ")[0].strip() for option in options}


def _stop_button(page: Page) -> Locator:
    return page.get_by_test_id("stMainBlockContainer").get_by_role(
        "button", name="Stop", exact=True
    )


def _starts(home: Path, runs: dict[str, list[str]]) -> dict[str, float]:
    """Wait until every run has started (its ``status.json``); return when each did."""
    wanted = [run for owned in runs.values() for run in owned]
    starts: dict[str, float] = {}
    deadline = time.monotonic() + ALL_STARTED_S
    while len(starts) < len(wanted) and time.monotonic() < deadline:
        for run in wanted:
            moment = None if run in starts else started_at(home, run)
            if moment is not None:
                starts[run] = moment
        time.sleep(1)
    assert len(starts) == len(wanted), (
        f"not started in {ALL_STARTED_S} s: {set(wanted) - set(starts)}"
    )
    return starts


@pytest.mark.e2e
@pytest.mark.slow
def test_four_students_join_queue_in_fair_turns_and_only_control_their_own_runs(
    browser: Browser, class_url: str, class_home: Path
) -> None:
    tabs = {name: _tab(browser) for name in NAMES}

    # A wrong code is refused, and the wizard stays hidden; the right one lets Ada in.
    ada = tabs["Ada"]
    ada.goto(class_url)
    wait_until_settled(ada, STEP_MS)
    fill_join_form(ada, "Ada", "NOT-THE-CODE")
    _refused(ada, re.compile("not this class's"))
    fill_join_form(ada, "Ada", CLASS_CODE)
    expect(ada.get_by_test_id("stSidebarUserContent").get_by_text("Ada")).to_be_visible(
        timeout=STEP_MS
    )
    for name in NAMES[1:]:
        join(tabs[name], class_url, name)

    # A name already in the class is refused, whatever its case.
    impostor = _tab(browser)
    impostor.goto(class_url)
    wait_until_settled(impostor, STEP_MS)
    fill_join_form(impostor, "ada", CLASS_CODE)
    _refused(impostor, re.compile("already taken"))

    # A reload keeps who Ada is (the cookie), with no sign-in form.
    ada.reload()
    wait_until_settled(ada, STEP_MS)
    expect(ada.get_by_test_id("stSidebarUserContent").get_by_text("Ada")).to_be_visible(
        timeout=STEP_MS
    )
    expect(ada.get_by_role("button", name="Join class")).to_have_count(0)

    # The class is paused while everyone queues: Ada twice first, then the others.
    update_class_settings(Identity.teacher(), home=class_home, paused=True)
    runs: dict[str, list[str]] = {name: [] for name in NAMES}
    for name in NAMES:
        choose_tiny_model(tabs[name])
        for _ in range(2 if name == "Ada" else 1):
            open_train_form(tabs[name], epochs=1)
            runs[name].append(start_run(tabs[name]))

    # Ben's queued run has Stop in Ben's tab, and none when Ada opens it by its URL.
    expect(_stop_button(tabs["Ben"])).to_be_visible(timeout=STEP_MS)
    ada_peeks = ada.context.new_page()
    ada_peeks.goto(f"{class_url}/train?run={runs['Ben'][0]}")
    wait_until_settled(ada_peeks, STEP_MS)
    expect(ada_peeks.get_by_test_id("stSidebarUserContent").get_by_text("Ada")).to_be_visible()
    expect(_stop_button(ada_peeks)).to_have_count(0)

    # Each student's Runs page lists their own runs; the teacher's lists everyone's.
    assert _listed_runs(tabs["Ben"]) == set(runs["Ben"])
    teacher = _tab(browser)
    sign_in_as_teacher(teacher, class_url)
    assert _listed_runs(teacher) == {run for owned in runs.values() for run in owned}

    # Unpaused, the runs start in turns: Ada's second after everyone's first.
    update_class_settings(Identity.teacher(), home=class_home, paused=False)
    starts = _starts(class_home, runs)
    order = sorted(starts, key=starts.__getitem__)
    expected = [runs["Ada"][0], runs["Ben"][0], runs["Cleo"][0], runs["Dev"][0], runs["Ada"][1]]
    assert order == expected

    for page in [*tabs.values(), impostor, ada_peeks, teacher]:
        assert exceptions_on(page) == 0, page.url
