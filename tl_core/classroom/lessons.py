"""Lessons: a teacher's experiment for the class, with its question, arms and locked settings.

A lesson fixes a dataset, a backbone and weights and a starting freeze plan, and names the
few settings students may change; everything else is locked, and the Train page shows it
greyed with the teacher's value and why. A lesson with several arms (`Variant`) hands them
out to the students in turn ("half the class freezes, half fine-tunes"), so the class runs
the whole experiment together and the board (`board_rows`) assembles the result. A lesson
with a question asks each student for a prediction before their run may start.

Lessons are JSON files, ``TL_HOME/lessons/<lesson id>.json`` (the predictions beside them in
``<lesson id>.predictions.json``), so a teacher exports one (`export_lesson`) and imports it
next term or on a colleague's machine (`import_lesson`). Lesson ids are slugs checked
against ``[a-z0-9-]{1,40}``: no path ever comes from what a user typed.

The rules, enforced here rather than in the pages: only the teacher (or the operator,
``actor=None``) creates, opens, closes and deletes lessons; a student trains in an open
lesson only, in the arm they were given, changing only the editable settings, and only
after a prediction when the lesson asks a question (`submit_lesson_run`).

Example:
    >>> lesson = lesson_from_builtin(None, "fe-vs-ft", dataset_id="0123456789ab")  # doctest: +SKIP
    >>> open_lesson(None, lesson.lesson_id)  # doctest: +SKIP
    >>> record_prediction(ada, lesson.lesson_id, "Fine-tuning wins by 1–5 points")  # doctest: +SKIP
    >>> submit_lesson_run(ada, lesson.lesson_id, {"seed": 3})  # doctest: +SKIP
    '20261207-204500-a1b2c3'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tl_core.classroom.identity import Identity, name_key, same_name
from tl_core.classroom.ownership import require_teacher
from tl_core.classroom.roster import list_students
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied, ConfigError, JobError
from tl_core.fsutil import FolderLock, read_json, write_json_atomic
from tl_core.models.backbones import get_backbone
from tl_core.workspace import tl_home

__all__ = [
    "BUILTIN_IDS",
    "CHARTS",
    "OPERATOR_NAME",
    "BoardRow",
    "Lesson",
    "Variant",
    "board_rows",
    "builtin_lessons",
    "delete_lesson",
    "export_lesson",
    "import_lesson",
    "lesson_config",
    "lesson_from_builtin",
    "lesson_from_run",
    "lesson_of_run",
    "list_lessons",
    "load_lesson",
    "locked_reason",
    "open_lesson",
    "open_lessons",
    "prediction_for",
    "predictions",
    "record_prediction",
    "save_lesson",
    "submit_lesson_run",
    "variant_for",
]

#: Charts a board can draw: the freeze-depth ladder (x = trainable top blocks) and the
#: data-size curve (x = share of the training images).
CHARTS = ("", "ladder", "datasize")
#: Whose predictions and runs the operator's are (single-user mode: the self-learner).
OPERATOR_NAME = "You"
#: The longest prediction kept, in characters.
MAX_PREDICTION = 1000
#: What `lesson_from_run` lets students change unless told otherwise.
DEFAULT_EDITABLE = ("epochs", "learning_rate", "batch_size", "augmentation", "dropout", "seed")

_ID = re.compile(r"[a-z0-9-]{1,40}")
_FIELDS = tuple(f.name for f in fields(RunConfig))
_FORMAT = 1
_LOCK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Variant:
    """One arm of a lesson, handed to the students in turn.

    Attributes:
        name: what the student reads ("Fine-tune top 4", "depth 2", "25 % · pretrained").
        settings: the `RunConfig` fields this arm sets (locked for the student).
        x: where a board chart plots the arm (depth, fraction); ``None`` when no chart.
    """

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    x: float | None = None


@dataclass(frozen=True)
class Lesson:
    """A lesson: what the class trains, what each student may change, what it asks.

    Attributes:
        lesson_id: a slug, ``[a-z0-9-]{1,40}``; the file is ``TL_HOME/lessons/<id>.json``.
        title: its name on the pages.
        question: what students predict before running (``""``: no prediction needed).
        explanation: a short page of Markdown on the idea the lesson teaches.
        settings: the `RunConfig` fields the teacher fixed (``dataset_id``, ``backbone``…);
            fields it leaves out take `RunConfig`'s defaults, locked too.
        editable: the `RunConfig` fields students may change.
        locked_reasons: why a locked field is locked, by field (a general reason otherwise).
        variants: the arms handed out in turn; empty when everyone runs the same.
        chart: ``""``, ``"ladder"`` or ``"datasize"`` (see `CHARTS`).
        prediction_choices: the answers to pick from; empty for a free-text prediction.
        is_open: whether students may train in it now.
        builtin: the built-in it was made from (``""``: from a run or imported as such).
    """

    lesson_id: str
    title: str
    question: str
    explanation: str
    settings: Mapping[str, Any]
    editable: tuple[str, ...]
    locked_reasons: Mapping[str, str]
    variants: tuple[Variant, ...] = ()
    chart: str = ""
    prediction_choices: tuple[str, ...] = ()
    is_open: bool = False
    builtin: str = ""

    def variant_named(self, name: str) -> Variant:
        """The arm called `name`.

        Raises:
            ConfigError: when the lesson has no such arm (listing the arms).
        """
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        raise ConfigError(
            f"Lesson {self.lesson_id!r} has no arm {name!r}. Its arms are {names}: pick one."
        )


@dataclass(frozen=True)
class BoardRow:
    """One student on a lesson's board: their arm, their latest run in it, their prediction."""

    student: str
    variant: str
    x: float | None
    run_id: str | None
    state: str
    best_val_accuracy: float | None
    prediction: str | None


# --- the built-in lessons --------------------------------------------------------------------

_SAME_DATA = "Everyone trains on the same images, so the class's results compare."
_SAME_NET = "The lesson compares training choices on one pretrained network."
_ARM = "Set by your arm of the lesson: the class splits the experiment between students."
_SAME_RECIPE = "Kept the same for every arm, so the only difference is what the lesson varies."

_FE_VS_FT = """\
**Feature extraction** keeps the whole pretrained backbone frozen and trains only a new
classifier head on its output. The backbone's features (edges, textures, parts of objects)
were learned from a million ImageNet photos; for most new image tasks they are already good,
so a small head on top learns quickly, from few images, and cannot wreck them.

**Fine-tuning** also lets the top blocks of the backbone train. Those blocks hold the most
task-specific features, so adapting them can fit your images better than ImageNet's, and
it usually adds a few points of accuracy when the new images differ from ImageNet's.
The price: many more trainable weights, slower epochs, and a risk of overfitting when the
dataset is small.

That is why the usual recipe starts with feature extraction: it is a cheap, safe baseline,
and fine-tuning has to beat it to be worth its cost. Half the class runs each arm with
everything else the same; compare the best validation accuracies on the board.
"""

_DEPTH = """\
A backbone is a stack of blocks: the bottom ones detect generic patterns (edges, colours),
the top ones detect combinations specific to what it was trained on. Unfreezing more blocks
from the top lets more of the network adapt to your images.

More trainable blocks means more capacity, but also more weights to fit from the same small
dataset. Past some depth the extra blocks start to memorise the training images instead of
learning what generalises: training accuracy keeps rising while validation accuracy stalls
or falls. The deeper blocks also hold generic features that were fine as they were, so
changing them gains little. Each student trains one depth (0 = head only); the board draws
validation accuracy against depth as the results arrive. Look for where the curve levels off
or turns down: that is how deep this dataset can afford to go.
"""

_BATCHNORM = """\
BatchNorm layers normalise each feature with a mean and a variance. While training they use
the current batch's statistics and update running averages of them; at inference they use
those running averages. A pretrained backbone's running averages describe ImageNet.

When you fine-tune, the frozen BatchNorm layers should stay in inference mode: they keep
using ImageNet's statistics, which the weights above them were trained to expect. If
BatchNorm trains instead, each small batch of your images gives noisy statistics that differ
from ImageNet's; the running averages drift towards them, and the layers above suddenly
receive differently scaled inputs. Training accuracy can still look fine (the batch
statistics are used there), but validation, which uses the drifted running averages, can
collapse. Small batches make the noise, and the collapse, worse. Both arms fine-tune the
same top blocks with small batches; only BatchNorm's mode differs.
"""

_DATASIZE = """\
Training from scratch has to learn every feature from your images alone; a pretrained
backbone arrives with features learned from a million photos and only has to learn how to
combine them for your classes. So pretrained models need far fewer images to reach good
accuracy.

The class trains both at 10 %, 25 %, 50 % and 100 % of the training images (the validation
images stay the same, so every point compares fairly). The board draws the two data-size
curves: expect the pretrained curve to start high and stay nearly flat, and the from-scratch
curve to start low and climb steeply, still far below at 100 %. The gap is what transfer
learning buys you when data is scarce.
"""

_COMMON = {"epochs": 8, "learning_rate": 3e-4, "optimizer": "adam", "seed": 0}


def _builtin_fe_vs_ft() -> Lesson:
    return Lesson(
        lesson_id="fe-vs-ft",
        title="Feature extraction vs fine-tuning",
        question="Will fine-tuning the top 4 blocks beat feature extraction here? By how much?",
        explanation=_FE_VS_FT,
        settings={**_COMMON},
        editable=("augmentation",),
        locked_reasons={
            "dataset_id": _SAME_DATA,
            "backbone": _SAME_NET,
            "weights": _SAME_NET,
            "freeze": _ARM,
            "unfreeze_last": _ARM,
        },
        variants=(
            Variant("Feature extraction", {"freeze": "feature-extraction"}),
            Variant("Fine-tune top 4", {"freeze": "fine-tune", "unfreeze_last": 4}),
        ),
        prediction_choices=(
            "Fine-tuning wins by more than 5 points",
            "Fine-tuning wins by 1 to 5 points",
            "About the same (within 1 point)",
            "Feature extraction wins",
        ),
        builtin="fe-vs-ft",
    )


def _builtin_depth() -> Lesson:
    depths = (0, 1, 2, 4, 8)
    return Lesson(
        lesson_id="unfreeze-depth",
        title="How deep to unfreeze",
        question="As more top blocks train, what happens to validation accuracy?",
        explanation=_DEPTH,
        settings={**_COMMON, "freeze": "fine-tune"},
        editable=("augmentation",),
        locked_reasons={
            "dataset_id": _SAME_DATA,
            "backbone": _SAME_NET,
            "weights": _SAME_NET,
            "freeze": "Every arm fine-tunes; only the number of top blocks differs.",
            "unfreeze_last": _ARM,
        },
        variants=tuple(
            Variant(
                f"depth {d}" + (" (head only)" if d == 0 else ""), {"unfreeze_last": d}, float(d)
            )
            for d in depths
        ),
        chart="ladder",
        prediction_choices=(
            "It keeps rising",
            "It rises, then levels off",
            "It rises, then falls (overfitting)",
            "It falls from the start",
        ),
        builtin="unfreeze-depth",
    )


def _builtin_batchnorm() -> Lesson:
    return Lesson(
        lesson_id="batchnorm-pitfall",
        title="The BatchNorm pitfall",
        question="Fine-tuning with BatchNorm training on small batches: what happens to "
        "validation accuracy compared with BatchNorm frozen?",
        explanation=_BATCHNORM,
        settings={**_COMMON, "freeze": "fine-tune", "unfreeze_last": 4, "batch_size": 8},
        editable=(),
        locked_reasons={
            "dataset_id": _SAME_DATA,
            "backbone": _SAME_NET,
            "weights": _SAME_NET,
            "freeze": _SAME_RECIPE,
            "unfreeze_last": _SAME_RECIPE,
            "batch_size": "Small batches make BatchNorm's batch statistics noisy: that is "
            "the pitfall the lesson shows.",
            "train_bn": _ARM,
        },
        variants=(
            Variant("BatchNorm frozen", {"train_bn": False}),
            Variant("BatchNorm training", {"train_bn": True}),
        ),
        prediction_choices=(
            "Training BatchNorm does better",
            "About the same",
            "Training BatchNorm does a little worse",
            "Training BatchNorm collapses (far below its training accuracy)",
        ),
        builtin="batchnorm-pitfall",
    )


def _builtin_datasize() -> Lesson:
    arms = []
    for fraction in (0.1, 0.25, 0.5, 1.0):
        share = f"{fraction * 100:g} %"
        arms.append(
            Variant(
                f"{share} · pretrained",
                {"train_fraction": fraction, "weights": "imagenet", "freeze": "feature-extraction"},
                fraction,
            )
        )
        arms.append(
            Variant(
                f"{share} · from scratch",
                {"train_fraction": fraction, "weights": "none", "freeze": "full"},
                fraction,
            )
        )
    return Lesson(
        lesson_id="data-size",
        title="How much data do you need",
        question="With only 10 % of the training images, how do pretrained and from-scratch "
        "models compare with their accuracy at 100 %?",
        explanation=_DATASIZE,
        settings={**_COMMON},
        editable=("augmentation",),
        locked_reasons={
            "dataset_id": _SAME_DATA,
            "backbone": "Both curves use the same network, pretrained or not.",
            "weights": _ARM,
            "freeze": _ARM,
            "train_fraction": _ARM,
        },
        variants=tuple(arms),
        chart="datasize",
        prediction_choices=(
            "Both lose about the same",
            "Pretrained stays close; from scratch drops far",
            "From scratch stays close; pretrained drops far",
            "Both stay close",
        ),
        builtin="data-size",
    )


_BUILTINS = {
    "fe-vs-ft": _builtin_fe_vs_ft,
    "unfreeze-depth": _builtin_depth,
    "batchnorm-pitfall": _builtin_batchnorm,
    "data-size": _builtin_datasize,
}
#: The built-in lessons' ids, in the order they are taught.
BUILTIN_IDS = tuple(_BUILTINS)


def builtin_lessons() -> list[Lesson]:
    """The four built-in lessons, not yet bound to a dataset (no ``dataset_id``).

    Example:
        >>> [lesson.title for lesson in builtin_lessons()][:2]
        ['Feature extraction vs fine-tuning', 'How deep to unfreeze']
    """
    return [make() for make in _BUILTINS.values()]


# --- storage ---------------------------------------------------------------------------------


def _lessons_dir(home: Path | None, *, create: bool = False) -> Path:
    folder = (home or tl_home()) / "lessons"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_id(lesson_id: Any) -> str:
    if not isinstance(lesson_id, str) or not _ID.fullmatch(lesson_id):
        raise ConfigError(
            "Expected a lesson id of 1 to 40 lowercase letters, digits and hyphens. "
            f"Received: {lesson_id!r}. Pick a lesson from the list."
        )
    return lesson_id


def _lesson_file(lesson_id: str, home: Path | None, suffix: str = ".json") -> Path:
    return _lessons_dir(home) / f"{_check_id(lesson_id)}{suffix}"


@contextmanager
def _locked(lesson_id: str, home: Path | None) -> Iterator[Path]:
    """Hold the lesson's lock while its files change (two sessions, one file)."""
    folder = _lessons_dir(home, create=True)
    lock = FolderLock(folder, f".{_check_id(lesson_id)}.lock")
    if not lock.acquire(timeout=_LOCK_TIMEOUT_S):
        raise JobError(
            f"Lesson {lesson_id!r} stayed locked for {_LOCK_TIMEOUT_S:.0f} s. Try again."
        )
    try:
        yield folder
    finally:
        lock.release()


def _to_doc(lesson: Lesson) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "lesson_id": lesson.lesson_id,
        "title": lesson.title,
        "question": lesson.question,
        "explanation": lesson.explanation,
        "settings": _jsonable_settings(lesson.settings),
        "editable": list(lesson.editable),
        "locked_reasons": dict(lesson.locked_reasons),
        "variants": [
            {"name": v.name, "settings": _jsonable_settings(v.settings), "x": v.x}
            for v in lesson.variants
        ],
        "chart": lesson.chart,
        "prediction_choices": list(lesson.prediction_choices),
        "is_open": lesson.is_open,
        "builtin": lesson.builtin,
    }


def _jsonable_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _text(doc: Mapping[str, Any], key: str, *, default: str | None = None, limit: int) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise ConfigError(
            f"Expected the lesson's `{key}` to be text of at most {limit} characters."
        )
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"Expected the lesson's `{what}` to be a list of texts.")
    return tuple(value)


def _settings(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"Expected the lesson's `{what}` to be an object of run settings.")
    _known_fields(value, what)
    return dict(value)


def _known_fields(names: Sequence[str] | Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(names) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"The lesson's `{what}` names unknown run settings {unknown}. Known settings: "
            f"{sorted(_FIELDS)}."
        )


def _from_doc(doc: Any) -> Lesson:
    """Build and check a lesson from its JSON document (`ConfigError` when malformed)."""
    if not isinstance(doc, dict):
        raise ConfigError("Expected a lesson to be a JSON object.")
    variants = doc.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError("Expected the lesson's `variants` to be a list of objects.")
    reasons = doc.get("locked_reasons", {})
    if not isinstance(reasons, dict) or not all(isinstance(r, str) for r in reasons.values()):
        raise ConfigError("Expected the lesson's `locked_reasons` to map settings to texts.")
    lesson = Lesson(
        lesson_id=_check_id(doc.get("lesson_id")),
        title=_text(doc, "title", limit=120).strip(),
        question=_text(doc, "question", default="", limit=500).strip(),
        explanation=_text(doc, "explanation", default="", limit=20_000),
        settings=_settings(doc.get("settings", {}), "settings"),
        editable=_names(doc.get("editable", []), "editable"),
        locked_reasons={str(k): v for k, v in reasons.items()},
        variants=tuple(_variant(v) for v in variants),
        chart=_text(doc, "chart", default="", limit=20),
        prediction_choices=_names(doc.get("prediction_choices", []), "prediction_choices"),
        is_open=doc.get("is_open", False) is True,
        builtin=_text(doc, "builtin", default="", limit=40),
    )
    return _checked(lesson)


def _variant(doc: Mapping[str, Any]) -> Variant:
    x = doc.get("x")
    if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
        raise ConfigError(f"Expected an arm's `x` to be a number or null. Received: x={x!r}")
    name = _text(doc, "name", limit=80).strip()
    return Variant(name, _settings(doc.get("settings", {}), f"arm {name!r}"), x)


def _checked(lesson: Lesson) -> Lesson:
    """Refuse a lesson whose parts do not fit: unknown fields, a bad chart, arms that would
    not make a valid `RunConfig`."""
    _check_id(lesson.lesson_id)
    if not lesson.title:
        raise ConfigError("A lesson needs a title. Give it one and save again.")
    if lesson.chart not in CHARTS:
        raise ConfigError(f"Expected the lesson's `chart` to be one of {list(CHARTS)}.")
    _known_fields(lesson.settings, "settings")
    _known_fields(lesson.editable, "editable")
    _known_fields(lesson.locked_reasons, "locked_reasons")
    names = [v.name for v in lesson.variants]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ConfigError(f"Expected the lesson's arms to have distinct names. Received {names}.")
    set_by_arms = sorted({k for v in lesson.variants for k in v.settings} & set(lesson.editable))
    if set_by_arms:
        raise ConfigError(
            f"The settings {set_by_arms} are set by the lesson's arms, so students cannot "
            "change them. Take them out of the editable settings."
        )
    if "dataset_id" in lesson.settings:
        for variant in lesson.variants or (Variant(""),):
            _run_config({**lesson.settings, **variant.settings})
    return lesson


def _run_config(settings: Mapping[str, Any]) -> RunConfig:
    try:
        return RunConfig(**settings)
    except TypeError as exc:
        raise ConfigError(f"The lesson's settings cannot make a run: {exc}.") from exc


def _write(lesson: Lesson, home: Path | None) -> Lesson:
    with _locked(lesson.lesson_id, home) as folder:
        write_json_atomic(folder / f"{lesson.lesson_id}.json", _to_doc(lesson))
    return lesson


def list_lessons(*, home: Path | None = None) -> list[Lesson]:
    """Every stored lesson, by title; damaged files are left out.

    Example:
        >>> [lesson.lesson_id for lesson in list_lessons()]  # doctest: +SKIP
        ['fe-vs-ft']
    """
    folder = _lessons_dir(home)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if path.name.endswith(".predictions.json") or not _ID.fullmatch(path.stem):
            continue
        try:
            found.append(load_lesson(path.stem, home=home))
        except ConfigError:
            continue
    return sorted(found, key=lambda lesson: (lesson.title.casefold(), lesson.lesson_id))


def load_lesson(lesson_id: str, *, home: Path | None = None) -> Lesson:
    """The stored lesson `lesson_id`.

    Raises:
        ConfigError: when the id is malformed, names no lesson, or its file is damaged.
    """
    doc = read_json(_lesson_file(lesson_id, home))
    if doc is None:
        raise ConfigError(
            f"There is no lesson {lesson_id!r} (it may have been deleted). Pick a lesson from "
            "the list."
        )
    lesson = _from_doc(doc)
    if lesson.lesson_id != lesson_id:
        raise ConfigError(f"The file of lesson {lesson_id!r} names another lesson.")
    return lesson


def open_lessons(*, home: Path | None = None) -> list[Lesson]:
    """The lessons open to the class now, by title."""
    return [lesson for lesson in list_lessons(home=home) if lesson.is_open]


def save_lesson(actor: Identity | None, lesson: Lesson, *, home: Path | None = None) -> Lesson:
    """Check and store `lesson` (replacing the stored lesson with the same id).

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: when the lesson does not fit together (`_checked`'s rules).
    """
    require_teacher(actor, action="create or change lessons")
    return _write(_checked(lesson), home)


def open_lesson(
    actor: Identity | None, lesson_id: str, is_open: bool = True, *, home: Path | None = None
) -> Lesson:
    """Open `lesson_id` to the class (or close it, ``is_open=False``); return it.

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: an unknown lesson, or one not bound to a dataset yet.
    """
    require_teacher(actor, action="open or close lessons")
    lesson = load_lesson(lesson_id, home=home)
    if is_open and "dataset_id" not in lesson.settings:
        raise ConfigError(
            f"Lesson {lesson_id!r} has no dataset yet, so nobody could train in it. "
            "Create it again with a dataset."
        )
    return _write(replace(lesson, is_open=is_open), home)


def delete_lesson(actor: Identity | None, lesson_id: str, *, home: Path | None = None) -> None:
    """Delete the lesson and its predictions; the runs made in it stay (and keep its id).

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: when `lesson_id` is malformed.
    """
    require_teacher(actor, action="delete lessons")
    with _locked(lesson_id, home) as folder:
        for suffix in (".json", ".predictions.json"):
            (folder / f"{lesson_id}{suffix}").unlink(missing_ok=True)


def export_lesson(lesson_id: str, *, home: Path | None = None) -> str:
    """The lesson as JSON text, closed, for `import_lesson` on this or another machine.

    Example:
        >>> json.loads(export_lesson("fe-vs-ft"))["title"]  # doctest: +SKIP
        'Feature extraction vs fine-tuning'
    """
    lesson = replace(load_lesson(lesson_id, home=home), is_open=False)
    return json.dumps(_to_doc(lesson), indent=1, ensure_ascii=False)


def import_lesson(
    actor: Identity | None,
    text: str | bytes,
    *,
    dataset_id: str | None = None,
    home: Path | None = None,
) -> Lesson:
    """Check and store a lesson exported by `export_lesson`; it arrives closed.

    An id already taken gets a free one (``fe-vs-ft-2``). Weights files are not portable,
    so an imported lesson uses ``"imagenet"`` or ``"none"`` weights only.

    Args:
        actor: who imports it (the teacher or the operator).
        text: the JSON text (or its UTF-8 bytes).
        dataset_id: the dataset to bind it to on this machine (default ``None``: keep the
            exported one).
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: when `text` is not JSON, not a lesson, or names a weights file.
    """
    require_teacher(actor, action="import lessons")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            "That file is not a lesson: it is not valid JSON. Export the lesson again with "
            "Export on the Class page (or `python -m tl_core lesson export`)."
        ) from exc
    lesson = _from_doc(doc)
    settings = dict(lesson.settings)
    if dataset_id is not None:
        settings["dataset_id"] = dataset_id
    for weights in [settings.get("weights")] + [v.settings.get("weights") for v in lesson.variants]:
        if weights not in (None, "imagenet", "none"):
            raise ConfigError(
                "The lesson names a weights file, which does not travel with it. Change its "
                "weights to 'imagenet' or 'none' and export it again."
            )
    lesson = replace(lesson, settings=settings, is_open=False)
    return save_lesson(
        actor, replace(lesson, lesson_id=_free_id(lesson.lesson_id, home)), home=home
    )


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")[:36].strip("-")
    return slug or "lesson"


def _free_id(wanted: str, home: Path | None) -> str:
    """`wanted`, or with the first free ``-2``, ``-3``… suffix when a lesson has it."""
    base = wanted[:36].rstrip("-") or "lesson"
    candidate, n = wanted, 1
    while _lesson_file(candidate, home).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def lesson_from_builtin(
    actor: Identity | None,
    builtin_id: str,
    *,
    dataset_id: str,
    backbone: str = "mobilenet_v2",
    weights: str = "imagenet",
    home: Path | None = None,
) -> Lesson:
    """Store a closed copy of a built-in lesson bound to a dataset and a backbone.

    Args:
        actor: the teacher or the operator.
        builtin_id: one of `BUILTIN_IDS`.
        dataset_id: the dataset the class trains on.
        backbone: the backbone id (default ``"mobilenet_v2"``).
        weights: the starting weights (default ``"imagenet"``); the data-size lesson's
            from-scratch arms start from random weights whatever this says. The image
            size is the one the wizard suggests for the dataset's images.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: an unknown built-in or backbone, or settings that make no valid run.

    Example:
        >>> lesson = lesson_from_builtin(None, "fe-vs-ft", dataset_id="ab" * 6)  # doctest: +SKIP
        >>> lesson.is_open  # doctest: +SKIP
        False
    """
    require_teacher(actor, action="create lessons")
    if builtin_id not in _BUILTINS:
        raise ConfigError(
            f"There is no built-in lesson {builtin_id!r}. The built-ins are {list(BUILTIN_IDS)}."
        )
    lesson = _BUILTINS[builtin_id]()
    settings = {**lesson.settings, "dataset_id": dataset_id, "backbone": backbone}
    settings["weights"] = weights
    settings["image_size"] = _suggested_size(dataset_id, backbone, home)
    lesson = replace(lesson, settings=settings, lesson_id=_free_id(builtin_id, home))
    return save_lesson(actor, lesson, home=home)


def _suggested_size(dataset_id: str, backbone: str, home: Path | None) -> int | None:
    """The input size the wizard would suggest for the dataset's images (small images are
    not enlarged: that adds compute, not detail); ``None`` when the dataset is not here."""
    from tl_core.data import load_dataset
    from tl_core.errors import TLError
    from tl_core.models.catalog import suggest_image_size, typical_image_side

    spec = get_backbone(backbone)
    try:
        report = load_dataset(dataset_id, home=home)
    except TLError:
        return None
    return suggest_image_size(spec, typical_image_side(report))


def lesson_from_run(
    actor: Identity | None,
    run_id: str,
    *,
    title: str,
    question: str = "",
    editable: Sequence[str] = DEFAULT_EDITABLE,
    explanation: str = "",
    prediction_choices: Sequence[str] = (),
    home: Path | None = None,
) -> Lesson:
    """Store a closed lesson that starts every student from `run_id`'s settings.

    Args:
        actor: the teacher or the operator.
        run_id: the run whose settings the lesson fixes.
        title: the lesson's name.
        question: what students predict before running (default ``""``: none).
        editable: the settings students may change (default `DEFAULT_EDITABLE`).
        explanation: a short Markdown page (default ``""``).
        prediction_choices: answers to pick from (default ``()``: free text).
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: when `actor` is a student.
        ConfigError: an empty title or unknown editable settings.
        JobError: when `run_id` names no run.
    """
    from tl_core.jobs.runs import RunFiles, run_path

    require_teacher(actor, action="create lessons")
    doc = read_json(RunFiles(run_path(run_id, home)).config)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise JobError(f"There is no run {run_id} (or its run.json is unreadable). Pick a run.")
    settings = RunConfig.from_json(doc["config"]).to_json()
    lesson = Lesson(
        lesson_id=_free_id(_slug(title), home),
        title=title.strip(),
        question=question.strip(),
        explanation=explanation,
        settings=settings,
        editable=tuple(editable),
        locked_reasons={"dataset_id": _SAME_DATA},
        prediction_choices=tuple(c.strip() for c in prediction_choices if c.strip()),
    )
    return save_lesson(actor, lesson, home=home)


# --- students in a lesson --------------------------------------------------------------------


def variant_for(lesson: Lesson, student_name: str, *, home: Path | None = None) -> Variant | None:
    """The arm `student_name` trains in: the arms handed out in turn, in the order students
    joined the class, so each arm gets an equal share of the class.

    A name not in the roster (the teacher, the operator) gets an arm picked from its name,
    so it too stays the same on every visit. ``None`` when the lesson has no arms.

    Example:
        >>> variant_for(lesson, "Ada").name  # doctest: +SKIP
        'Feature extraction'
    """
    if not lesson.variants:
        return None
    names = [student.name for student in list_students(home=home)]
    for index, name in enumerate(names):
        if same_name(name, student_name):
            return lesson.variants[index % len(lesson.variants)]
    digest = hashlib.sha256(name_key(student_name).encode("utf-8")).digest()
    return lesson.variants[int.from_bytes(digest[:4], "big") % len(lesson.variants)]


def locked_reason(lesson: Lesson, name: str, variant: Variant | None = None) -> str | None:
    """Why the run setting `name` is locked in `lesson`; ``None`` when students may change it.

    Args:
        lesson: the lesson.
        name: a `RunConfig` field.
        variant: the student's arm (default ``None``); its settings are always locked.
    """
    if variant is not None and name in variant.settings:
        return lesson.locked_reasons.get(name, _ARM)
    if name in lesson.editable:
        return None
    return lesson.locked_reasons.get(
        name, "Fixed by the teacher for this lesson, so every student's result compares."
    )


def lesson_config(
    lesson: Lesson,
    student_name: str,
    requested: Mapping[str, Any],
    *,
    variant: Variant | None = None,
    home: Path | None = None,
) -> RunConfig:
    """The run config of `student_name` in `lesson`: the lesson's settings, their arm's, and
    the editable settings they asked for.

    Args:
        lesson: the lesson.
        student_name: who runs it (picks the arm, `variant_for`).
        requested: the settings the student's form holds; a locked one may appear only with
            the value the lesson gives it.
        variant: the arm to use instead of the student's (default ``None``); for the
            teacher and the operator, who may run any arm.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: naming the locked setting when `requested` changes one.
        ConfigError: unknown settings, or values a run refuses.

    Example:
        >>> config = lesson_config(lesson, "Ada", {"augmentation": ["zoom"]})  # doctest: +SKIP
        >>> config.freeze  # doctest: +SKIP
        'feature-extraction'
    """
    _known_fields(requested, "requested settings")
    arm = variant if variant is not None else variant_for(lesson, student_name, home=home)
    base = _run_config({**lesson.settings, **(arm.settings if arm else {})}).to_json()
    changes = {}
    for name, value in requested.items():
        value = list(value) if isinstance(value, tuple) else value
        if value == base[name]:
            continue
        reason = locked_reason(lesson, name, arm)
        if reason is not None:
            raise AccessDenied(
                f"The setting `{name}` is locked in the lesson {lesson.title!r} "
                f"(it is {base[name]!r}): {reason} Leave it as it is."
            )
        changes[name] = value
    return _run_config({**base, **changes})


def _name_of(actor: Identity | None) -> str:
    return actor.name if actor is not None else OPERATOR_NAME


def _require_open(actor: Identity | None, lesson: Lesson) -> None:
    if actor is not None and not actor.is_teacher and not lesson.is_open:
        raise AccessDenied(
            f"The lesson {lesson.title!r} is closed, so it takes no predictions or runs now. "
            "Wait until the teacher opens it."
        )


def record_prediction(
    actor: Identity | None, lesson_id: str, text: str, *, home: Path | None = None
) -> None:
    """Keep `actor`'s prediction for the lesson's question (replacing an earlier one).

    Raises:
        AccessDenied: when a student predicts in a closed lesson.
        ConfigError: an empty or too long prediction, or an unknown lesson.
    """
    lesson = load_lesson(lesson_id, home=home)
    _require_open(actor, lesson)
    text = (text or "").strip()
    if not text:
        raise ConfigError("Write or pick a prediction first, then save it.")
    if len(text) > MAX_PREDICTION:
        raise ConfigError(
            f"Expected a prediction of at most {MAX_PREDICTION} characters. Received "
            f"{len(text)}: keep it to a sentence or two."
        )
    name = _name_of(actor)
    with _locked(lesson_id, home) as folder:
        path = folder / f"{lesson_id}.predictions.json"
        doc = {k: v for k, v in _read_predictions(path).items() if not same_name(k, name)}
        doc[name] = text
        write_json_atomic(path, doc)


def _read_predictions(path: Path) -> dict[str, str]:
    doc = read_json(path, {})
    if not isinstance(doc, dict):
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, str)}


def predictions(lesson_id: str, *, home: Path | None = None) -> dict[str, str]:
    """Every prediction made in the lesson, by the name of who made it."""
    return _read_predictions(_lesson_file(lesson_id, home, ".predictions.json"))


def prediction_for(lesson_id: str, name: str, *, home: Path | None = None) -> str | None:
    """`name`'s prediction in the lesson (`OPERATOR_NAME` for the operator); ``None`` if none."""
    for who, text in predictions(lesson_id, home=home).items():
        if same_name(who, name):
            return text
    return None


def submit_lesson_run(
    actor: Identity | None,
    lesson_id: str,
    requested: Mapping[str, Any],
    *,
    variant: str | None = None,
    home: Path | None = None,
) -> str:
    """Queue `actor`'s run in the lesson; return its run id.

    The run's ``run.json`` records ``"lesson": {"id", "variant", "prediction"}``.

    Args:
        actor: who runs it. A student needs the lesson open and trains in their arm.
        lesson_id: the lesson.
        requested: the settings on the student's form (see `lesson_config`).
        variant: the arm's name, for the teacher and the operator (default ``None``: the
            arm `variant_for` gives them); a student may only name their own.
        home: the workspace root (default ``TL_HOME``).

    Raises:
        AccessDenied: a closed lesson (students), another arm or a locked setting changed,
            no prediction yet when the lesson asks a question, or the class's limits
            (`tl_core.jobs.queue.submit`).
        ConfigError: settings a run refuses, or an unknown lesson or arm.
    """
    from tl_core.jobs.queue import submit

    lesson = load_lesson(lesson_id, home=home)
    _require_open(actor, lesson)
    name = _name_of(actor)
    arm = variant_for(lesson, name, home=home)
    if variant is not None and (arm is None or variant != arm.name):
        if actor is not None and not actor.is_teacher:
            raise AccessDenied(
                f"Your arm of the lesson {lesson.title!r} is {arm.name if arm else 'none'!r}; "
                "the class's arms are handed out in turn so each is run. Train in yours."
            )
        arm = lesson.variant_named(variant)
    prediction = prediction_for(lesson_id, name, home=home)
    if lesson.question and prediction is None:
        raise AccessDenied(
            f"The lesson asks: {lesson.question} Save your prediction first; then start "
            "training and compare."
        )
    config = lesson_config(lesson, name, requested, variant=arm, home=home)
    label = {"id": lesson.lesson_id, "variant": arm.name if arm else "", "prediction": prediction}
    return submit(config, actor=actor, home=home, labels={"lesson": label})


def lesson_of_run(run_id: str, *, home: Path | None = None) -> dict[str, Any] | None:
    """The ``"lesson"`` record of a run's ``run.json`` (``id``, ``variant``, ``prediction``);
    ``None`` for a run made outside lessons."""
    from tl_core.jobs.runs import RunFiles, run_path

    doc = read_json(RunFiles(run_path(run_id, home)).config)
    label = doc.get("lesson") if isinstance(doc, dict) else None
    if not isinstance(label, dict) or not isinstance(label.get("id"), str):
        return None
    return label


# --- the board -------------------------------------------------------------------------------


def board_rows(lesson_id: str, *, home: Path | None = None) -> list[BoardRow]:
    """The lesson's board: one row per student in the roster (join order) with their arm,
    latest run in the lesson and prediction; then the runs of people outside the roster
    (the teacher, the operator), one row per person and arm.

    A row with a run shows the prediction the run started with, so a prediction changed
    after the results came in does not rewrite what was predicted.

    Example:
        >>> [(row.student, row.state) for row in board_rows("fe-vs-ft")]  # doctest: +SKIP
        [('Ada', 'completed'), ('Grace', 'queued')]
    """
    from tl_core.jobs.runs import list_runs

    lesson = load_lesson(lesson_id, home=home)
    said = predictions(lesson_id, home=home)
    latest: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
    for run in reversed(list_runs(home)):  # oldest first: later runs replace earlier ones
        label = lesson_of_run(run.run_id, home=home)
        if label is None or label["id"] != lesson_id:
            continue
        key = (name_key(run.owner or OPERATOR_NAME), str(label.get("variant", "")))
        latest[key] = (run, label)
    rows = []
    roster = [student.name for student in list_students(home=home)]
    for name in roster:
        theirs = [(arm, found) for (who, arm), found in latest.items() if who == name_key(name)]
        if theirs:
            arm_name, found = max(theirs, key=lambda item: (item[1][0].created_at, item[0]))
            rows.append(_row(lesson, name, arm_name, found, said))
        else:
            arm = variant_for(lesson, name, home=home)
            rows.append(_row(lesson, name, arm.name if arm else "", None, said))
    in_roster = {name_key(name) for name in roster}
    for (who, arm_name), found in sorted(latest.items(), key=lambda item: item[1][0].created_at):
        if who not in in_roster:
            rows.append(_row(lesson, found[0].owner or OPERATOR_NAME, arm_name, found, said))
    return rows


def _row(
    lesson: Lesson,
    name: str,
    arm: str,
    found: tuple[Any, Mapping[str, Any]] | None,
    said: Mapping[str, str],
) -> BoardRow:
    run, label = found if found is not None else (None, {})
    prediction = label.get("prediction")
    if not isinstance(prediction, str):
        prediction = next((text for who, text in said.items() if same_name(who, name)), None)
    variant = next((v for v in lesson.variants if v.name == arm), None)
    return BoardRow(
        student=name,
        variant=arm,
        x=variant.x if variant else None,
        run_id=run.run_id if run else None,
        state=run.state if run else "not started",
        best_val_accuracy=run.best_val_accuracy if run else None,
        prediction=prediction,
    )
