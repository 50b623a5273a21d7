"""Render datasets: the upload explainer, the stored-dataset picker and the ingest report.

Every function here only draws; none of them ingests or chooses anything except the
picker, which records the choice through `ui.state`.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pandas as pd
import streamlit as st
from PIL import Image

from tl_core import DatasetReport, ImageRecord, IngestLimits
from tl_core.data.images import ALLOWED_FORMATS
from tl_core.viz.markdown import escape_markdown
from tl_core.viz.plots import class_counts_figure
from ui import state
from ui.errors import user_errors

#: Thumbnails shown per class in the gallery.
THUMBNAILS_PER_CLASS = 8
#: Display width of a thumbnail, in CSS pixels; the image itself has twice that many
#: pixels so that it stays sharp on high-density screens.
THUMBNAIL_WIDTH = 104

_SPLIT_ORDER = ("train", "val", "test")


def render_explainer(limits: IngestLimits) -> None:
    """Explain in plain words what a usable zip looks like, with the limits in force."""
    st.markdown(
        "Zip **one folder per class**: the folder names become the class names. "
        "A wrapper folder around them is fine, and so are `train/` and `val/` folders "
        "that each hold the same class folders; they are kept as your split."
    )
    with st.expander("Layout, formats and limits", icon=":material/help:"):
        st.code(
            "flowers.zip            flowers.zip\n"
            "├── daisy/             ├── train/\n"
            "│   ├── 001.jpg        │   ├── daisy/…\n"
            "│   └── …              │   └── tulip/…\n"
            "└── tulip/             └── val/\n"
            "    └── …                  ├── daisy/…\n"
            "                           └── tulip/…",
            language=None,
        )
        formats = ", ".join(ALLOWED_FORMATS)
        st.markdown(
            f"- **Formats:** {formats}, recognised by content, not by the file extension.\n"
            f"- **Limits:** the zip up to {_size(limits.max_archive_bytes)}, "
            f"{limits.max_entries:,} files and {_size(limits.max_total_bytes)} unpacked; "
            f"each image up to {_size(limits.max_entry_bytes)} and "
            f"{limits.max_image_pixels / 1e6:g} megapixels, and at least "
            f"{limits.min_image_side} px on its shorter side. Images are stored scaled "
            f"down to {limits.stored_max_side} px at most.\n"
            "- **Ignored:** hidden files and system clutter (`__MACOSX/`, `.DS_Store`, "
            "`Thumbs.db`). Any other file that cannot be used is listed with the reason."
        )


def _size(n_bytes: int) -> str:
    mib = n_bytes / (1024 * 1024)
    return f"{mib / 1024:,.3g} GB" if mib >= 1024 else f"{mib:,.4g} MB"


def dataset_label(report: DatasetReport) -> str:
    """One line naming a dataset: ``"shapes.zip · 4 classes · 280 images · a1b2c3"``."""
    return (
        f"{report.source_name} · {len(report.classes)} classes · "
        f"{report.num_images:,} images · {report.dataset_id[:6]}"
    )


def pick_stored_dataset(reports: list[DatasetReport]) -> None:
    """Show a picker over stored datasets; picking one makes it the session's dataset."""
    labels = {report.dataset_id: dataset_label(report) for report in reports}
    chosen = state.dataset_id()
    # The picker mirrors the session's choice, which an upload can change too, so its
    # value is set from that choice on every run and only a user's pick changes it back.
    st.session_state[state.DATASET_PICKER] = chosen if chosen in labels else None
    st.selectbox(
        "Stored datasets",
        list(labels),
        format_func=labels.__getitem__,
        key=state.DATASET_PICKER,
        on_change=_picked,
        placeholder="No dataset stored yet",
    )
    st.caption(
        "Every zip read on this server is kept, newest first, the sample included: switch "
        "back and forth without uploading again."
    )


def _picked() -> None:
    picked = st.session_state.get(state.DATASET_PICKER)
    if isinstance(picked, str):
        state.set_dataset_id(picked)


def render_report(report: DatasetReport) -> None:
    """Render an ingest report: metrics, warnings, counts, examples and skipped files."""
    st.header(escape_markdown(report.source_name), anchor=False)
    st.caption(f"The dataset the next steps will use · id `{report.dataset_id}`")
    _render_metrics(report)
    _render_warnings(report)
    counts = class_split_counts(report)
    chart_col, table_col = st.columns([3, 2], gap="large")
    with chart_col:
        st.subheader("Images per class", anchor=False)
        st.plotly_chart(
            class_counts_figure(counts),
            key="class_counts_chart",
            config={"displayModeBar": False},
        )
    with table_col:
        st.subheader("Per class and split", anchor=False)
        if report.split is None:
            st.dataframe(counts.set_axis(["images"], axis="columns"), width="stretch")
            st.caption(
                "No `train/` and `val/` folders, so the images are not split yet: "
                "a validation part is drawn from them when you train."
            )
        else:
            st.dataframe(counts.assign(total=counts.sum(axis=1)), width="stretch")
    st.subheader("Examples", anchor=False)
    render_gallery(report)
    if report.skipped:
        st.subheader(f"Skipped files ({len(report.skipped):,})", anchor=False)
        st.dataframe(
            pd.DataFrame(
                {
                    "File": [s.path for s in report.skipped],
                    "Reason": [s.reason for s in report.skipped],
                }
            ),
            hide_index=True,
            width="stretch",
        )


def _render_metrics(report: DatasetReport) -> None:
    columns = st.columns(5)
    columns[0].metric("Images", f"{report.num_images:,}", border=True)
    columns[1].metric("Classes", len(report.classes), border=True)
    if report.split is None:
        columns[2].metric("Split", "None", border=True, help="No train/ or val/ folders.")
    else:
        names = _ordered_splits(report.split)
        columns[2].metric(
            " / ".join(names).capitalize(),
            " / ".join(f"{report.split[name]:,}" for name in names),
            border=True,
        )
    columns[3].metric(
        "Skipped files",
        f"{len(report.skipped):,}",
        border=True,
        help="Files that could not be used; the table at the bottom says why.",
    )
    columns[4].metric(
        "Junk ignored",
        f"{report.junk_ignored:,}",
        border=True,
        help="Hidden files and system clutter such as __MACOSX/ and .DS_Store.",
    )


def _render_warnings(report: DatasetReport) -> None:
    if not report.warnings:
        st.success(
            "No warnings: every class has enough images, the classes are balanced, and no "
            "picture is filed under two classes or two splits.",
            icon=":material/check_circle:",
        )
    for warning in report.warnings:
        st.warning(escape_markdown(warning), icon=":material/warning:")


def class_split_counts(report: DatasetReport) -> pd.DataFrame:
    """Return images per class (rows, in label order) and split (columns)."""
    pairs = Counter((record.label, record.split) for record in report.images)
    splits = _ordered_splits({split for _, split in pairs})
    return pd.DataFrame(
        [[pairs[(name, split)] for split in splits] for name in report.class_names],
        index=pd.Index(report.class_names, name="class"),
        columns=splits,
    )


@st.fragment
def render_gallery(report: DatasetReport) -> None:
    """Show example thumbnails, one tab per class; only the open tab loads its images."""
    names = report.class_names
    tabs = st.tabs(
        [f"{escape_markdown(name)} ({report.classes[name]:,})" for name in names],
        key=f"gallery_{report.dataset_id}",
        on_change="rerun",
    )
    by_class: dict[str, list[ImageRecord]] = {name: [] for name in names}
    for record in report.images:
        by_class[record.label].append(record)
    for tab, name in zip(tabs, names, strict=True):
        if not tab.open or report.root is None:
            continue
        examples = _spread(by_class[name], THUMBNAILS_PER_CLASS)
        # A tab switch reruns only this fragment, outside the page's own error handling.
        with tab, user_errors():
            st.image(
                [thumbnail(str(report.root / record.path)) for record in examples],
                caption=[_caption(record, report.split is not None) for record in examples],
                width=THUMBNAIL_WIDTH,
            )


def _caption(record: ImageRecord, with_split: bool) -> str:
    """The original file name, after its split when there is one (names repeat across splits)."""
    name = escape_markdown(PurePosixPath(record.source).name)
    return f"{record.split} · {name}" if with_split else name


def _spread(records: list[ImageRecord], count: int) -> list[ImageRecord]:
    """Pick `count` records spread evenly over the list (over splits and file names)."""
    if len(records) <= count:
        return records
    step = len(records) / count
    return [records[int(i * step)] for i in range(count)]


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail(path: str, width: int = THUMBNAIL_WIDTH) -> bytes:
    """Return a JPEG of the stored image `path`, sharp when shown `width` pixels wide.

    Stored images never change (a dataset folder is named by its content hash), so a
    thumbnail is cached by its path and width alone.
    """
    side = 2 * width  # for screens with two device pixels per CSS pixel
    with Image.open(Path(path)) as image:
        image.draft("RGB", (side, side))
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def _ordered_splits(splits: Iterable[str]) -> list[str]:
    """Order split names train, val, test, then anything else (such as ``all``)."""
    rank = {name: index for index, name in enumerate(_SPLIT_ORDER)}
    return sorted(splits, key=lambda name: (rank.get(name, len(rank)), name))
