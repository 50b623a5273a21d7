"""A teacher and two students through the built-in "Feature extraction vs fine-tuning"
lesson in real browsers: the lesson opens, a locked setting cannot be changed, each student
predicts and then trains in their arm, and the teacher's board shows both results beside
both predictions.

The server runs in class mode with its real scheduler, so the two runs train in real
workers. The teacher makes the lesson on the Class page from the built-in, on the sample,
with MobileNetV3Small from random weights; to keep the runs short on a small machine the
test then sets the lesson's image size to 32 px and its epochs to one through the core (the
Class page's form does not offer them), keeping the rest of the built-in: its question,
arms, answers and locks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.browser_support import TIMEOUT_MS, nav, wait_until_settled
from tests.e2e.class_support import (
    SAMPLE_MS,
    exceptions_on,
    join,
    serve_class,
    sign_in_as_teacher,
    start_run,
)
from tl_core.classroom import Identity
from tl_core.classroom.lessons import Lesson, list_lessons, load_lesson, save_lesson
from tl_core.jobs.runs import FINAL_STATES, read_status, run_path

#: Two one-epoch runs one after the other, each with a worker's cold start (TensorFlow's
#: import, the model's build and compile); generous for a busy 2-core machine.
RUNS_DONE_S = 240
#: The test's size of the lesson: small enough to train in seconds.
TINY = {"backbone": "mobilenet_v3_small", "weights": "none", "image_size": 32, "epochs": 1}
BUILTIN_TITLE = "Feature extraction vs fine-tuning"
LOCKED_EPOCHS = re.compile(r"Epochs$")
PREDICTIONS = {
    "Ada": "Fine-tuning wins by more than 5 points",
    "Ben": "About the same (within 1 point)",
}


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class server's log (conftest attaches it to the report of a failed test)."""
    return tmp_path_factory.mktemp("lesson_server") / "streamlit.log"


@pytest.fixture(scope="module")
def lesson_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class server's ``TL_HOME``, read and written by the test for the lesson's size
    and the runs' states."""
    return tmp_path_factory.mktemp("lesson_home")


@pytest.fixture(scope="module")
def class_url(lesson_home: Path, server_log: Path) -> Iterator[str]:
    """Serve the app in class mode; yield its URL."""
    with serve_class(lesson_home, server_log) as url:
        yield url


def _tab(browser: Browser) -> Page:
    """A tab in a browser context of its own: its own cookies, so its own person."""
    return browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


def _create_lesson(teacher: Page, home: Path) -> Lesson:
    """On the Class page's Lessons tab, make the built-in lesson on the sample with
    MobileNetV3Small from random weights; then size it for the test (see the module)."""
    nav(teacher, "Class")
    teacher.get_by_role("tab", name="Lessons").click()
    _choose(teacher, "Built-in lesson", BUILTIN_TITLE)
    _choose(teacher, "Backbone", TINY["backbone"])
    teacher.get_by_text("None (from scratch)", exact=True).click()
    wait_until_settled(teacher)
    teacher.locator(".st-key-class_lesson_create_builtin button").click()
    wait_until_settled(teacher)
    expect(teacher.get_by_text("is ready, closed")).to_be_visible(timeout=TIMEOUT_MS)
    (made,) = list_lessons(home=home)
    assert (made.title, made.settings["backbone"]) == (BUILTIN_TITLE, TINY["backbone"])
    assert made.settings["weights"] == "none" and not made.is_open
    sized = dataclasses.replace(made, settings={**made.settings, **TINY})
    return save_lesson(Identity.teacher(), sized, home=home)


def _open_to_the_class(teacher: Page, lesson: Lesson, home: Path) -> None:
    """The teacher opens the lesson on the Lessons tab."""
    teacher.reload()
    wait_until_settled(teacher)
    teacher.get_by_role("tab", name="Lessons").click()
    teacher.locator(".st-key-class_lesson_open button").click()
    wait_until_settled(teacher)
    expect(teacher.get_by_text(re.compile(r"is open: students find it"))).to_be_visible()
    assert load_lesson(lesson.lesson_id, home=home).is_open


def _choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the selectbox `label`, and wait for the rerun.

    On a machine busy training, a rerun that lands while the list opens closes it again
    before the click: the list is then opened anew.
    """
    wait_until_settled(page)
    box = page.get_by_role("combobox", name=label)
    item = page.get_by_role("option", name=option, exact=True)
    for _ in range(3):
        box.click()
        with contextlib.suppress(PlaywrightTimeoutError):
            item.click(timeout=5_000)
            break
    else:
        pytest.fail(f"the list of {label!r} never offered {option!r}")
    wait_until_settled(page)
    expect(box).to_have_value(option)


def _pick_lesson(page: Page, lesson: Lesson) -> None:
    """On the Train page, choose `lesson` in the Lesson picker."""
    nav(page, "Train")
    _choose(page, "Lesson", lesson.title)
    expect(page.get_by_text(lesson.question).first).to_be_visible(timeout=TIMEOUT_MS)


def _predict_then_run(page: Page, prediction: str) -> str:
    """Start is locked until a prediction is saved; save one, start, return the run id."""
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_disabled()
    _choose(page, "Your prediction", prediction)
    page.get_by_role("button", name="Save prediction").click()
    wait_until_settled(page)
    expect(page.get_by_text(f"Saved prediction: {prediction}")).to_be_visible()
    expect(start).to_be_enabled()
    return start_run(page)


def _wait_until_final(home: Path, runs: list[str]) -> None:
    deadline = time.monotonic() + RUNS_DONE_S
    states: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        states = {run: getattr(read_status(run_path(run, home)), "state", None) for run in runs}
        if all(state in FINAL_STATES for state in states.values()):
            break
        time.sleep(1)
    assert all(state == "completed" for state in states.values()), states


@pytest.mark.e2e
@pytest.mark.slow
def test_a_teacher_and_two_students_go_through_a_built_in_lesson(
    browser: Browser, class_url: str, lesson_home: Path
) -> None:
    teacher = _tab(browser)
    sign_in_as_teacher(teacher, class_url)
    expect(teacher.get_by_role("heading", name="sample_shapes.zip")).to_be_visible(
        timeout=SAMPLE_MS
    )
    lesson = _create_lesson(teacher, lesson_home)
    _open_to_the_class(teacher, lesson, lesson_home)

    runs = []
    arms = {}
    for name, prediction in PREDICTIONS.items():
        student = _tab(browser)
        join(student, class_url, name)
        _pick_lesson(student, lesson)
        arm = student.get_by_text(re.compile(r"^Your arm: ")).first
        expect(arm).to_be_visible()
        arms[name] = arm.inner_text().removeprefix("Your arm: ").strip()
        # A locked setting shows the teacher's value and cannot be changed.
        epochs = student.get_by_role("spinbutton", name=LOCKED_EPOCHS)
        expect(epochs).to_be_disabled()
        expect(epochs).to_have_value("1")
        runs.append(_predict_then_run(student, prediction))
        assert exceptions_on(student) == 0
    # The arms are handed out in turn: one student each.
    assert sorted(arms.values()) == ["Feature extraction", "Fine-tune top 4"]

    _wait_until_final(lesson_home, runs)
    nav(teacher, "Board")
    board = teacher.get_by_test_id("stTable").first
    for name, prediction in PREDICTIONS.items():
        row = board.get_by_role("row").filter(has_text=name)
        expect(row).to_contain_text(arms[name], timeout=TIMEOUT_MS)
        expect(row).to_contain_text("completed", timeout=TIMEOUT_MS)
        expect(row).to_contain_text(re.compile(r"\d+\.\d%"))
        expect(row).to_contain_text(prediction)
    expect(teacher.get_by_text(re.compile(r"leads with \d+\.\d%"))).to_be_visible()
    assert exceptions_on(teacher) == 0
