"""A run's settings as one URL parameter, and back: "share a setup by link".

`setup_params` turns a `RunConfig` into ``{"setup": <token>}``: the fields that differ from
`RunConfig`'s defaults (and the dataset id, which has none) as compact JSON, base64url
encoded without padding, so the token needs no escaping in a URL. `config_from_params`
reads such parameters back, trusting nothing: every field is checked alone against
`RunConfig`'s own rules, and whatever is unknown or invalid is dropped and named in
`SharedSetup.ignored`, so a page can apply the rest and say what it left out.

A weights *file* is never shared: its path means nothing on another machine (and a link
must not point the studio at arbitrary files), so only ``"imagenet"`` and ``"none"``
travel. A dataset id must be 12 hex digits, which also keeps it from naming a path.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tl_core.config import RunConfig
from tl_core.errors import ConfigError
from tl_core.models.backbones import get_backbone

__all__ = ["MAX_TOKEN_CHARS", "SETUP_PARAM", "SharedSetup", "config_from_params", "setup_params"]

#: The query parameter that carries a shared setup.
SETUP_PARAM = "setup"
#: Longest token read: a full config is about 600 characters; more is not a setup link.
MAX_TOKEN_CHARS = 4000
#: Weights values a link may carry (a file path is local to one machine).
SHAREABLE_WEIGHTS = ("imagenet", "none")

_UNREADABLE = "the whole link (it is not a setup link: damaged or cut short?)"
_DATASET_ID = re.compile(r"[0-9a-f]{12}")
#: Any valid dataset id, to check the other fields one at a time with `RunConfig`'s rules.
_PROBE_DATASET = "000000000000"
_DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.name != "dataset_id"}


@dataclass(frozen=True)
class SharedSetup:
    """What a setup link asks for, checked.

    Attributes:
        settings: valid `RunConfig` fields by name (JSON values: lists, not tuples),
            ``dataset_id`` among them when the link carries a valid one.
        ignored: one short phrase per thing dropped (``"epochs (not valid)"``), in the
            order met; empty when everything was taken.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def setup_params(config: RunConfig) -> dict[str, str]:
    """Return the query parameters that share `config`: ``{"setup": token}``.

    Only the dataset id and the fields that differ from `RunConfig`'s defaults are
    encoded, which keeps links short. A weights file is left out (see the module).

    Example:
        >>> params = setup_params(RunConfig(dataset_id="0123456789ab", epochs=3))
        >>> config_from_params(params).settings
        {'dataset_id': '0123456789ab', 'epochs': 3}
    """
    doc = config.to_json()
    chosen = {"dataset_id": doc["dataset_id"]}
    for name, default in _DEFAULTS.items():
        value = doc[name]
        if isinstance(default, tuple):
            default = list(default)
        if value != default and (name != "weights" or value in SHAREABLE_WEIGHTS):
            chosen[name] = value
    text = json.dumps(chosen, separators=(",", ":"), sort_keys=True)
    token = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")
    return {SETUP_PARAM: token}


def config_from_params(params: Mapping[str, str]) -> SharedSetup:
    """Read the setup a link's query parameters carry; drop what is unknown or invalid.

    Args:
        params: the URL's query parameters (only ``setup`` is read).

    Returns:
        The valid fields and what was ignored. A missing parameter gives an empty
        `SharedSetup`; one that cannot be decoded gives no settings and says so.

    Example:
        >>> token = setup_params(RunConfig(dataset_id="0123456789ab"))["setup"]
        >>> config_from_params({"setup": token}).settings["dataset_id"]
        '0123456789ab'
        >>> config_from_params({"setup": "not-a-setup"}).ignored
        ('the whole link (it is not a setup link: damaged or cut short?)',)
    """
    token = params.get(SETUP_PARAM)
    if not token:
        return SharedSetup()
    doc = _decode(token)
    if doc is None:
        return SharedSetup(ignored=(_UNREADABLE,))
    settings: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in doc.items():
        problem = _problem(name, value)
        if problem is None:
            settings[name] = value
        else:
            ignored.append(f"{_shown(name)} ({problem})")
    _check_custom_plan(settings, ignored)
    return SharedSetup(settings, tuple(ignored))


def _decode(token: str) -> dict[str, Any] | None:
    """The JSON object in `token`, or ``None`` when it is not one."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # JSON and Unicode errors are ValueErrors
        return None
    return doc if isinstance(doc, dict) else None


def _problem(name: str, value: Any) -> str | None:
    """Why the field `name` cannot be taken with `value`; ``None`` when it can."""
    if name == "dataset_id":
        ok = isinstance(value, str) and _DATASET_ID.fullmatch(value) is not None
        return None if ok else "not a dataset id"
    if name not in _DEFAULTS:
        return "not a setting"
    if name == "weights":
        return None if value in SHAREABLE_WEIGHTS else "only ImageNet or random weights travel"
    if name == "backbone":
        try:
            get_backbone(value)
        except (ConfigError, TypeError):
            return "not a backbone the studio knows"
        return None
    # A custom plan and its blocks need each other: each is probed with a stand-in for
    # the other, and `_check_custom_plan` looks at the pair.
    probe = {name: value}
    if name == "trainable_blocks":
        probe["freeze"] = "custom"
    elif name == "freeze":
        probe["trainable_blocks"] = ("block",)
    try:
        RunConfig(dataset_id=_PROBE_DATASET, **probe)
    except (ConfigError, TypeError):
        return "not valid"
    return None


def _check_custom_plan(settings: dict[str, Any], ignored: list[str]) -> None:
    """A custom freeze plan needs its blocks: without them, drop the plan too."""
    if settings.get("freeze") == "custom" and not settings.get("trainable_blocks"):
        del settings["freeze"]
        ignored.append("freeze='custom' (the link names no blocks)")


def _shown(name: str) -> str:
    """A field name as the ignored list shows it: short, printable, never a long blob."""
    text = name if isinstance(name, str) else repr(name)
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= 40 else text[:39] + "…"
