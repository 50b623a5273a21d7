"""The Predict & Export page's pieces: pictures to classify, predictions, exports, the card.

The web process never loads a model (Keras model files have had many ``safe_mode``
bypasses, CVE-2025-1550 among them): predictions and
exports are background analyses (`ui.analysis.await_analysis`), whose CLI arguments are
built here by `predict_args` and `export_args`, so that tests store results under the
very arguments the page asks for. Uploaded pictures are checked with Pillow and stored
by content at once (`tl_core.data.uploads.store_upload`), once per upload.

A prediction asks for every class's rank (``--top`` the number of classes): the "classes
to list" input then only slices what is there, and changing it starts no new process.
An export starts only when asked (a button per format); once its result is kept on disk
it is offered for download at once, on any later visit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tl_core import DataError, TLError, load_dataset
from tl_core.analysis.background import analysis_folder, forget_analysis, result_path
from tl_core.analysis.export import model_card
from tl_core.analysis.predict import OVERLAY_SIDE
from tl_core.data.dataset import split_dataset
from tl_core.data.uploads import store_upload
from tl_core.jobs.runs import RunFiles, RunSummary, read_json
from tl_core.viz.markdown import escape_markdown
from ui import state
from ui.analysis import await_analysis

#: Widget key of the trained-run picker.
RUN_PICKER = "predict_run_picker"
#: Widget key of the picture uploader (several files at once).
UPLOADER = "predict_upload"
#: Widget key of the "Try validation images" toggle.
SAMPLES_TOGGLE = "predict_validation_samples"
#: Widget key of the "classes to list per image" input.
TOP_K_INPUT = "predict_top_k"
#: Widget key of the "also export int8" checkbox.
INT8_CHECKBOX = "export_int8"
#: Key prefix of each format's "Export" button (``export_start_keras``).
EXPORT_BUTTON = "export_start"
#: Key prefix of each format's download button (``export_download_keras``).
DOWNLOAD_BUTTON = "export_download"
#: Widget key of the ``labels.json`` download button.
LABELS_DOWNLOAD = "export_download_labels"
#: Widget key of the ``model_card.md`` download button.
CARD_DOWNLOAD = "export_download_card"
#: Key prefix of the prediction analysis (its status fragment and retry button).
PREDICT_ANALYSIS = "predict_analysis"
#: Key prefix of each format's export analysis (``export_analysis_keras``).
EXPORT_ANALYSIS = "export_analysis"

#: Session state: ``{file_id: {"path": str} | {"error": str}}`` for the uploads handled,
#: so that a rerun, which sees the same uploads again, neither decodes nor stores twice.
STORED_UPLOADS = "predict_stored_uploads"
#: Session state: the exports asked for in this session, as ``"<run_id>/<kind>"``.
EXPORTS_ASKED = "exports_asked"

#: At most this many pictures go into one prediction (each gets a Grad-CAM overlay,
#: about a second each on a CPU).
MAX_IMAGES = 12
#: How many of the most likely classes are listed per picture at first.
DEFAULT_TOP_K = 3
#: File types the uploader offers; the content decides whether a file is used.
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
#: Folder of a run that holds its exported files.
EXPORT_DIR = "export"


@dataclass(frozen=True)
class PredictImage:
    """A picture to classify: where it is stored and how the page names it.

    Args:
        path: the stored file (under ``TL_HOME/uploads`` or the run's dataset).
        name: what the user calls it (an upload's file name, or ``class/file`` for a
            validation image); shown escaped.
        true_label: the class a validation image belongs to; ``None`` for uploads.
    """

    path: Path
    name: str
    true_label: str | None = None


@dataclass(frozen=True)
class ExportTarget:
    """One exported file the page offers.

    Args:
        kind: short id, part of widget keys (``"keras"``, ``"tflite"``, ``"tflite-int8"``,
            ``"backbone"``).
        title: how the page names the format.
        fmt: the CLI's ``--format``.
        int8: pass ``--int8`` (int8-quantized TFLite).
        suffix: the file's ending after the run id (``".keras"``, ``"-int8.tflite"``).
        explanation: one or two sentences on what the file is for (Markdown).
    """

    kind: str
    title: str
    fmt: str
    int8: bool
    suffix: str
    explanation: str


KERAS_TARGET = ExportTarget(
    "keras",
    "Keras model (.keras)",
    "keras",
    False,
    ".keras",
    "The whole model with its preprocessing inside: it takes raw RGB pixels 0–255 and "
    "loads with plain `keras.saving.load_model`, without `tl_core`. No optimizer state.",
)
BACKBONE_TARGET = ExportTarget(
    "backbone",
    "Backbone weights (.weights.h5)",
    "backbone",
    False,
    "-backbone.weights.h5",
    "The trained backbone alone, without the head: choose *weights from a file* on the "
    "Backbone page and upload it to start another run (on another dataset too) from what "
    "this one learned. Offline, where ImageNet weights cannot be downloaded, a run trained "
    "from scratch becomes the pretrained start of the next.",
)
TFLITE_TARGET = ExportTarget(
    "tflite",
    "TensorFlow Lite, float32 (.tflite)",
    "tflite",
    False,
    ".tflite",
    "For phones and small devices (TensorFlow Lite / LiteRT). Same input as the Keras "
    "file (float32 RGB 0–255, preprocessing inside), same outputs within rounding.",
)
TFLITE_INT8_TARGET = ExportTarget(
    "tflite-int8",
    "TensorFlow Lite, int8 (.tflite)",
    "tflite",
    True,
    "-int8.tflite",
    "Weights and activations quantized to 8 bits, about 4× smaller and faster on phones; "
    "inputs and outputs stay float32. The activation ranges are calibrated on up to 100 "
    "of the run's training images (still stored here), and it may lose a little accuracy: "
    "check it on your own pictures before shipping it.",
)


def run_document(run_dir: Path) -> dict[str, Any]:
    """Return the run's ``run.json`` (an empty dict when unreadable)."""
    doc = read_json(RunFiles(Path(run_dir)).config, {})
    return doc if isinstance(doc, dict) else {}


def class_names(run_dir: Path) -> list[str]:
    """Return the run's class names in index order (empty when ``run.json`` lacks them)."""
    return [str(name) for name in run_document(run_dir).get("class_names", [])]


def predict_args(run_dir: Path, images: Sequence[Path], top: int) -> list[str]:
    """Return the CLI arguments of the prediction analysis of `images`, with Grad-CAM.

    Args:
        run_dir: a trained run.
        images: the pictures, in the order results are wanted.
        top: ``--top``, how many classes to rank per picture (the page asks for all).

    Example:
        >>> predict_args(Path("/w/runs/r1"), [Path("/w/uploads/ab.jpg")], 4)
        ['predict', '/w/runs/r1', '/w/uploads/ab.jpg', '--top', '4', '--gradcam', '/w/runs/r1/analysis/gradcam']
    """  # noqa: E501 - a doctest line cannot be wrapped
    return [
        "predict",
        str(run_dir),
        *(str(path) for path in images),
        "--top",
        str(top),
        "--gradcam",
        str(analysis_folder(run_dir) / "gradcam"),
    ]


def export_targets(*, int8: bool = False) -> tuple[ExportTarget, ...]:
    """Return the formats offered: ``.keras``, float32 TFLite, int8 with `int8`, and the
    backbone's weights.

    Example:
        >>> [target.kind for target in export_targets(int8=True)]
        ['keras', 'tflite', 'tflite-int8', 'backbone']
    """
    int8_targets = (TFLITE_INT8_TARGET,) if int8 else ()
    return (KERAS_TARGET, TFLITE_TARGET, *int8_targets, BACKBONE_TARGET)


def export_path(run_dir: Path, target: ExportTarget) -> Path:
    """Return where `target` of a run is exported: ``RUN_DIR/export/<run_id><suffix>``.

    Example:
        >>> export_path(Path("/w/runs/r1"), TFLITE_INT8_TARGET)
        PosixPath('/w/runs/r1/export/r1-int8.tflite')
    """
    run = Path(run_dir)
    return run / EXPORT_DIR / f"{run.name}{target.suffix}"


def export_args(run_dir: Path, target: ExportTarget) -> list[str]:
    """Return the CLI arguments of the export analysis of `target`.

    Example:
        >>> export_args(Path("/w/runs/r1"), KERAS_TARGET)
        ['export', '/w/runs/r1', '--format', 'keras', '--out', '/w/runs/r1/export/r1.keras']
    """
    args = ["export", str(run_dir), "--format", target.fmt]
    args += ["--out", str(export_path(run_dir, target))]
    return [*args, "--int8"] if target.int8 else args


def labels_path(run_dir: Path) -> Path:
    """Return the ``labels.json`` that every export writes next to its file."""
    return Path(run_dir) / EXPORT_DIR / "labels.json"


def describe_size(num_bytes: int) -> str:
    """Say a file size the way a download dialog does.

    Example:
        >>> describe_size(9_644_024), describe_size(622)
        ('9.2 MB', '1 KB')
    """
    if num_bytes < 1024 * 1024:
        return f"{max(1, round(num_bytes / 1024)):,} KB"
    return f"{num_bytes / (1024 * 1024):,.1f} MB"


def validation_images(run_dir: Path, *, limit: int = MAX_IMAGES) -> list[PredictImage]:
    """Return one validation image per class of the run's dataset (the first `limit`).

    They are the images the run held out from training (the same seeded split), so the
    model is seen on pictures it did not learn from, and their true class is known.

    Args:
        run_dir: a trained run.
        limit: at most this many images, one per class in class order (default
            `MAX_IMAGES`).

    Raises:
        DataError: the run's dataset is no longer stored.

    Example:
        >>> [image.true_label for image in validation_images(run)]  # doctest: +SKIP
        ['circle', 'square', 'star', 'triangle']
    """
    config = run_document(run_dir).get("config", {})
    picks = _validation_picks(
        str(config.get("dataset_id")),
        float(config.get("val_fraction", state.run_config_default("val_fraction"))),
        int(config.get("seed", state.run_config_default("seed"))),
        limit,
    )
    images = [PredictImage(Path(path), name, label) for path, name, label in picks]
    if not all(image.path.is_file() for image in images):
        _validation_picks.clear()
        raise DataError(
            "The validation images of this run are gone: its dataset was removed from "
            "this server. Upload pictures of your own instead."
        )
    return images


@st.cache_data(show_spinner=False, max_entries=32)
def _validation_picks(
    dataset_id: str, val_fraction: float, seed: int, limit: int
) -> list[tuple[str, str, str]]:
    # A stored dataset never changes (its folder is named by its content), so the split is
    # kept per id: large datasets take a while to index.
    try:
        report = load_dataset(dataset_id)
    except DataError as exc:
        raise DataError(
            f"The validation images of this run cannot be shown: {exc} Or upload pictures "
            "of your own instead."
        ) from exc
    assert report.root is not None  # load_dataset always says where it is stored
    examples = split_dataset(report, val_fraction=val_fraction, seed=seed).val_examples(1)
    return [
        (str(report.root / r.path), f"{r.label}/{PurePosixPath(r.path).name}", r.label)
        for r in examples[:limit]
    ]


# --- Predict --------------------------------------------------------------------------


def upload_pictures() -> list[PredictImage]:
    """Draw the picture uploader; return the usable uploads, stored (`store_uploads`)."""
    uploads = st.file_uploader(
        "Pictures to classify",
        type=list(UPLOAD_TYPES),
        accept_multiple_files=True,
        key=UPLOADER,
        help=f"Up to {MAX_IMAGES} at a time. Each one is checked and stored on this server.",
    )
    return store_uploads(uploads or [])


def top_k_input(num_classes: int) -> int:
    """Draw the "classes to list per picture" input (1 to `num_classes`); return it."""
    most = max(1, num_classes)
    return int(
        st.number_input(
            "Classes to list per picture",
            min_value=1,
            max_value=most,
            value=min(DEFAULT_TOP_K, most),
            key=TOP_K_INPUT,
        )
    )


def validation_samples_wanted() -> bool:
    """Draw the "Try validation images" toggle; return whether it is on."""
    return st.toggle(
        "Try validation images",
        key=SAMPLES_TOGGLE,
        help="One held-out image per class of the run's dataset: no files needed.",
    )


def store_uploads(uploads: Sequence[UploadedFile]) -> list[PredictImage]:
    """Store each usable upload (once per upload) and return them; explain the others.

    Each upload is checked with Pillow and written to ``TL_HOME/uploads`` the first time
    a script run sees it; its outcome is remembered by ``file_id``, so later reruns cost
    nothing. A bad file gets an ``st.error`` saying what is wrong and what to do, on every
    run while it stays in the uploader; the other pictures are used.

    Args:
        uploads: what ``st.file_uploader(accept_multiple_files=True)`` returned.

    Example:
        >>> images = store_uploads(st.file_uploader("Pictures", accept_multiple_files=True))  # doctest: +SKIP
    """  # noqa: E501 - a doctest line cannot be wrapped
    handled: dict[str, dict[str, str]] = st.session_state.get(STORED_UPLOADS, {})
    current: dict[str, dict[str, str]] = {}
    images: list[PredictImage] = []
    for upload in uploads:
        outcome = handled.get(upload.file_id)
        if outcome is None:
            try:
                outcome = {"path": str(store_upload(upload.getvalue(), name=upload.name))}
            except TLError as exc:
                outcome = {"error": str(exc)}
        current[upload.file_id] = outcome
        if "error" in outcome:
            st.error(escape_markdown(outcome["error"]), icon=":material/broken_image:")
        else:
            images.append(PredictImage(Path(outcome["path"]), upload.name))
    # Only the uploads still in the uploader are kept: session state stays small.
    st.session_state[STORED_UPLOADS] = current
    return images


def await_predictions(
    run_dir: Path, images: Sequence[PredictImage], num_classes: int
) -> list[dict[str, Any]] | None:
    """Ask for the prediction of `images` (see `pictures_to_classify`), with Grad-CAM.

    Args:
        run_dir: a trained run.
        images: the pictures, each stored once.
        num_classes: the run's number of classes: every class is ranked.

    Returns:
        The CLI's result (one dict per picture) once ready; ``None`` while it runs (a
        status line shows) or after it failed (the error shows).
    """
    count = f"{len(images)} picture{'s' if len(images) != 1 else ''}"
    return await_analysis(
        run_dir,
        predict_args(run_dir, [image.path for image in images], max(1, num_classes)),
        waiting=f"Classifying {count} and drawing where the model looked",
        key=PREDICT_ANALYSIS,
    )


def pictures_to_classify(images: Sequence[PredictImage]) -> list[PredictImage]:
    """Return `images` without repeats of one stored file, at most `MAX_IMAGES` of them.

    Says so on the page when some are left out.
    """
    first: dict[Path, PredictImage] = {}
    for image in images:
        first.setdefault(image.path, image)
    unique = list(first.values())
    if len(unique) > MAX_IMAGES:
        st.warning(
            f"Classifying the first {MAX_IMAGES} of {len(unique)} pictures: each one gets "
            "a Grad-CAM overlay, which takes a while. Remove some to see the others.",
            icon=":material/filter_list:",
        )
    return unique[:MAX_IMAGES]


def render_predictions(
    images: Sequence[PredictImage], results: Sequence[dict[str, Any]], top_k: int
) -> None:
    """Draw each picture with its predicted class, its `top_k` classes and its Grad-CAM.

    Args:
        images: the pictures asked for (`pictures_to_classify`).
        results: the prediction analysis's result, one dict per picture.
        top_k: how many of the most likely classes to list per picture.
    """
    by_path = {str(result.get("image")): result for result in results}
    for image in images:
        result = by_path.get(str(image.path))
        if result is not None:
            with st.container(border=True):
                _render_prediction(image, result, top_k)


def _render_prediction(image: PredictImage, result: dict[str, Any], top_k: int) -> None:
    label = str(result["label"])
    st.markdown(f"**{escape_markdown(image.name)}**")
    picture_col, scores_col, cam_col = st.columns(3, gap="medium")
    picture_col.image(str(image.path), width=OVERLAY_SIDE)
    with scores_col:
        st.metric(
            "Predicted class",
            label,
            delta=f"{float(result['confidence']):.1%} confident",
            delta_color="off",
            delta_arrow="off",
        )
        if image.true_label is not None:
            verdict = "right" if image.true_label == label else "wrong"
            st.caption(f"True class: **{escape_markdown(image.true_label)}** ({verdict})")
        ranking = sorted(
            result.get("probabilities", {}).items(), key=lambda item: item[1], reverse=True
        )
        for name, probability in ranking[:top_k]:
            st.progress(
                min(1.0, max(0.0, float(probability))),
                text=f"{escape_markdown(str(name))} · {float(probability):.1%}",
            )
    with cam_col:
        overlay = Path(str(result.get("gradcam") or ""))
        if result.get("gradcam") and overlay.is_file():
            st.image(str(overlay), width=OVERLAY_SIDE)
            st.caption(
                f"Grad-CAM: warm colours mark the parts of the picture that pushed the "
                f"model most towards **{escape_markdown(label)}** (layer "
                f"{escape_markdown(str(result.get('gradcam_layer', '?')))})."
            )
        else:
            st.caption("No Grad-CAM overlay for this picture.")


# --- Export ---------------------------------------------------------------------------


def int8_wanted() -> bool:
    """Draw the "also export int8" checkbox; return whether it is ticked."""
    return st.checkbox(
        "Also export an int8-quantized TensorFlow Lite model",
        key=INT8_CHECKBOX,
        help="About 4× smaller; calibrated on the run's training images.",
    )


def explain_no_export(run: RunSummary) -> None:
    """Say, instead of the export buttons, why someone else's (shared) run offers none."""
    if run.owner is None:
        whose, who = "the teacher's", "the teacher"
    else:
        owner = escape_markdown(run.owner)
        whose, who = f"{owner}'s", f"{owner} or the teacher"
    st.info(
        f"This is {whose} run, shared with the class: you can try it above, but only "
        f"{who} can export it. Export a run of your own instead.",
        icon=":material/lock:",
    )


def _asked_key(run_dir: Path, target: ExportTarget) -> str:
    return f"{Path(run_dir).name}/{target.kind}"


def _ask_export(run_dir: Path, target: ExportTarget, *, again: bool = False) -> None:
    if again:
        forget_analysis(run_dir, export_args(run_dir, target))
    asked = tuple(st.session_state.get(EXPORTS_ASKED, ()))
    st.session_state[EXPORTS_ASKED] = (*asked, _asked_key(run_dir, target))


def render_export_target(run_dir: Path, target: ExportTarget) -> None:
    """Draw one format: what it is, then its Export button, its progress or its download.

    Nothing starts until the button is pressed (an export takes 10–60 s); an export kept
    from earlier (this model's result on disk) is offered for download at once.
    """
    args = export_args(run_dir, target)
    with st.container(border=True):
        st.markdown(f"**{target.title}**: {target.explanation}")
        if target is KERAS_TARGET:
            st.code(keras_usage(run_dir), language="python")
        asked = _asked_key(run_dir, target) in st.session_state.get(EXPORTS_ASKED, ())
        if not (asked or result_path(run_dir, args).is_file()):
            st.button(
                f"Export {target.title}",
                key=f"{EXPORT_BUTTON}_{target.kind}",
                icon=":material/deployed_code:",
                on_click=_ask_export,
                args=(run_dir, target),
            )
            return
        result = await_analysis(
            run_dir,
            args,
            waiting=f"Exporting {target.title}",
            key=f"{EXPORT_ANALYSIS}_{target.kind}",
        )
        if result is None:
            return
        path = export_path(run_dir, target)
        if not path.is_file():
            st.warning(
                f"The exported file `{path.name}` has been removed since. Export it again.",
                icon=":material/warning:",
            )
            st.button(
                "Export again",
                key=f"{EXPORT_BUTTON}_{target.kind}_again",
                icon=":material/refresh:",
                on_click=_ask_export,
                args=(run_dir, target),
                kwargs={"again": True},
            )
            return
        st.download_button(
            f"Download {path.name} ({describe_size(path.stat().st_size)})",
            # Read when clicked, not on every script run: a model is tens of megabytes.
            data=path.read_bytes,
            file_name=path.name,
            mime="application/octet-stream",
            key=f"{DOWNLOAD_BUTTON}_{target.kind}",
            icon=":material/download:",
            on_click=state.mark_exported,
        )


def keras_usage(run_dir: Path) -> str:
    """Four lines of Python that use the exported ``.keras`` file without `tl_core`."""
    size = run_document(run_dir).get("image_size", "N")
    name = export_path(run_dir, KERAS_TARGET).name
    return (
        "import json, keras\n"
        f'model = keras.saving.load_model("{name}")  # plain Keras, no tl_core needed\n'
        'class_names = json.load(open("labels.json"))["class_names"]\n'
        f"probabilities = model.predict(images)  # float32 (n, {size}, {size}, 3), RGB 0–255"
    )


def render_labels_download(run_dir: Path) -> None:
    """Offer ``labels.json`` once an export wrote it; say where it comes from before."""
    path = labels_path(run_dir)
    if not path.is_file():
        st.caption(
            "`labels.json` (the class names in output order, and the input the model "
            "takes) is written next to any export above."
        )
        return
    st.download_button(
        f"Download labels.json ({describe_size(path.stat().st_size)})",
        data=path.read_bytes(),
        file_name="labels.json",
        mime="application/json",
        key=LABELS_DOWNLOAD,
        icon=":material/data_object:",
        on_click=state.mark_exported,
    )


def render_model_card(run_dir: Path) -> None:
    """Show the run's model card (Markdown, `tl_core.analysis.export.model_card`) and offer it."""
    card = model_card(run_dir)
    with st.expander("Model card", icon=":material/description:"):
        st.markdown(card)
    st.download_button(
        f"Download model_card.md ({describe_size(len(card.encode()))})",
        data=card,
        file_name="model_card.md",
        mime="text/markdown",
        key=CARD_DOWNLOAD,
        icon=":material/description:",
        on_click=state.mark_exported,
    )
