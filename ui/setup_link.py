"""Share a run's setup by link, and pre-fill the wizard from such a link.

A run's settings travel as one URL parameter (``?setup=…``, `tl_core.setup_link`): the
Runs page shows the link of the open run (`render_setup_link`), and `apply_shared_setup`,
called by `app.py` on every run, applies a link's setup once to the session: dataset,
backbone, weights, image size, freeze plan and the Train page's settings, exactly as the
run had them. The parameter is then dropped from the URL, so that the person's own changes
are not overwritten by the link again. Invalid parts are left out and named; in class mode
the dataset is applied only when the person may use it (`may_use_dataset`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from tl_core import TLError, load_dataset
from tl_core.classroom.ownership import may_use_dataset
from tl_core.config import RunConfig
from tl_core.fsutil import read_json
from tl_core.jobs.runs import RunFiles, run_path
from tl_core.models.backbones import get_backbone
from tl_core.setup_link import SETUP_PARAM, config_from_params, setup_params
from tl_core.viz.markdown import escape_markdown
from ui import state
from ui.identity import current_actor

#: Session state: the last setup token applied, so that a rerun never applies it twice.
APPLIED = "setup_link_applied"
#: Widget key prefix of the "Copy setup link" button (``setup_link_<run id>``).
LINK_BUTTON = "setup_link"
#: Session state: the run whose setup link is shown.
_SHOWN = "setup_link_shown"
#: The page a setup link opens: the Train page, where the pre-filled settings meet Start.
LINK_PAGE = "train"
#: The model fields the Backbone and Layers pages set (the Train page sets `state.TRAIN_FIELDS`).
_MODEL_FIELDS = (
    "backbone",
    "weights",
    "image_size",
    "freeze",
    "unfreeze_last",
    "trainable_blocks",
    "train_bn",
)


def apply_shared_setup() -> None:
    """Apply the URL's ``?setup=`` once to the session; call once per run, before the page.

    Says what was applied in a toast, and what was left out (invalid values, a dataset
    that is not stored here or that the person may not use) in a warning.
    """
    token = st.query_params.get(SETUP_PARAM)
    if not token:
        return
    del st.query_params[SETUP_PARAM]
    if st.session_state.get(APPLIED) == token:
        return
    st.session_state[APPLIED] = token
    shared = config_from_params({SETUP_PARAM: token})
    if not shared.settings:
        st.warning(
            "This setup link cannot be read: it may be damaged or cut short. Ask for the "
            "link again, or choose the settings on the wizard's pages.",
            icon=":material/link_off:",
        )
        return
    settings = dict(shared.settings)
    dataset_note = _apply_dataset(settings.pop("dataset_id", None))
    _apply_model(settings)
    _apply_training(settings)
    left_out = [*shared.ignored, *(f"{name} (not a setting of the wizard)" for name in settings)]
    st.toast(
        "Settings from a shared link: " + escape_markdown(describe_setup(shared.settings)),
        icon=":material/link:",
    )
    notes = [dataset_note] if dataset_note else []
    if left_out:
        notes.append("Left out of the link: " + escape_markdown("; ".join(left_out)) + ".")
    if notes:
        st.warning(" ".join(notes), icon=":material/link_off:")


def describe_setup(settings: dict[str, Any]) -> str:
    """A setup in one line, defaults filled in.

    Example:
        >>> describe_setup({"backbone": "mobilenet_v2", "epochs": 3, "freeze": "full"})
        'MobileNetV2 · ImageNet weights · every block trains · 3 epochs'
    """
    defaults = RunConfig(dataset_id="000000000000")
    value = {name: settings.get(name, getattr(defaults, name)) for name in ("backbone", "epochs")}
    parts = [get_backbone(value["backbone"]).keras_name]
    parts.append("random weights" if settings.get("weights") == "none" else "ImageNet weights")
    if settings.get("image_size"):
        parts.append(f"{settings['image_size']} px")
    parts.append(_freeze_words(settings))
    parts.append(f"{value['epochs']} epochs")
    return " · ".join(parts)


def _freeze_words(settings: dict[str, Any]) -> str:
    freeze = settings.get("freeze", "feature-extraction")
    if freeze == "fine-tune":
        depth = settings.get("unfreeze_last", state.run_config_default("unfreeze_last"))
        return f"top {depth} blocks train"
    if freeze == "custom":
        return f"{len(settings.get('trainable_blocks', ()))} chosen blocks train"
    return {"full": "every block trains"}.get(freeze, "feature extraction")


def _apply_dataset(dataset_id: str | None) -> str | None:
    """Choose the link's dataset when it is stored and the person may use it; otherwise
    return what to say (the session's own dataset then stays chosen)."""
    if dataset_id is None:
        return None
    actor = current_actor()
    if not may_use_dataset(actor, dataset_id):
        return (
            "The link's dataset belongs to another student, so your own dataset stays "
            "chosen; the other settings were applied."
        )
    try:
        load_dataset(dataset_id, actor=actor)
    except TLError:
        return (
            "The link's dataset is not stored on this server, so your own dataset stays "
            "chosen; the other settings were applied."
        )
    state.set_dataset_id(dataset_id)
    return None


def _apply_model(settings: dict[str, Any]) -> None:
    """The Backbone and Layers choices: the link's values, defaults for the rest (a link
    holds only what differs from them). Pops what it applies from `settings`."""
    value = {name: settings.pop(name, state.run_config_default(name)) for name in _MODEL_FIELDS}
    state.set_backbone_id(value["backbone"])  # first: a new backbone resets the freeze plan
    state.set_weights_source("scratch" if value["weights"] == "none" else "imagenet")
    if value["image_size"] is None:
        st.session_state.pop(state.IMAGE_SIZE, None)
    else:
        state.set_image_size(value["image_size"])
    state.set_unfreeze_last(value["unfreeze_last"])
    if value["freeze"] == "custom":
        state.set_custom_blocks(value["trainable_blocks"])
    elif value["freeze"] == "full" and value["weights"] == "none":
        state.set_freeze_preset("scratch")
    else:
        state.set_freeze_preset(value["freeze"])
    state.set_train_bn(value["train_bn"])


def _apply_training(settings: dict[str, Any]) -> None:
    """The Train page's fields: the link's values, defaults for the rest. Pops what it
    applies from `settings`."""
    for name in state.TRAIN_FIELDS:
        value = settings.pop(name, state.run_config_default(name))
        state.set_train_setting(name, tuple(value) if isinstance(value, list) else value)


def setup_url(config: RunConfig, base_url: str | None) -> str:
    """The link that opens the Train page with `config`'s setup pre-filled.

    Args:
        config: the run's settings.
        base_url: the app's address (``st.context.url``); ``None`` gives a relative link.

    Example:
        >>> setup_url(RunConfig(dataset_id="0123456789ab"), "http://box:8501")
        'http://box:8501/train?setup=eyJkYXRhc2V0X2lkIjoiMDEyMzQ1Njc4OWFiIn0'
    """
    token = setup_params(config)[SETUP_PARAM]
    page = f"{LINK_PAGE}?{SETUP_PARAM}={token}"
    return f"{base_url.rstrip('/')}/{page}" if base_url else page


def run_config(run_id: str) -> RunConfig | None:
    """The settings the run `run_id` trained with, from its ``run.json``; ``None`` when
    they cannot be read."""
    doc = read_json(RunFiles(run_path(run_id)).config)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        return None
    try:
        return RunConfig.from_json(config)
    except TLError:
        return None


def render_setup_link(run_id: str) -> None:
    """The "Copy setup link" button of a run; once clicked, the link to copy.

    Nothing shows for a run whose settings cannot be read.
    """
    config = run_config(run_id)
    if config is None:
        return
    st.button(
        "Copy setup link",
        key=f"{LINK_BUTTON}_{run_id}",
        icon=":material/link:",
        help="A link that opens the wizard with this run's dataset, backbone, weights, "
        "freeze plan and training settings filled in.",
        on_click=_show_link,
        args=(run_id,),
    )
    if st.session_state.get(_SHOWN) != run_id:
        return
    st.code(setup_url(config, st.context.url), language=None, wrap_lines=True)
    notes = ["Copy it with the button at its right."]
    if not config.from_scratch and config.weights != "imagenet":
        notes.append("The weights file stays on this machine: the link says ImageNet weights.")
    notes.append(
        "Whoever opens it gets these settings filled in; in a class, the dataset only "
        "when they may use it."
    )
    st.caption(" ".join(notes))


def _show_link(run_id: str) -> None:
    st.session_state[_SHOWN] = run_id
