"""The public facades: `__all__` is exactly what they export, and importing them is cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import tl_core
import tl_core.classroom
import tl_core.data
import tl_core.errors

ROOT = Path(__file__).resolve().parents[2]
FACADES = [tl_core, tl_core.classroom, tl_core.data, tl_core.errors]
HEAVY = ("tensorflow", "keras", "streamlit", "torch", "jax")


def public_names(module: ModuleType) -> set[str]:
    """Names a user gets from the module: not private, not a submodule, not `annotations`."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }


@pytest.mark.parametrize("module", FACADES, ids=lambda m: m.__name__)
def test_all_lists_exactly_the_public_names(module: ModuleType) -> None:
    exported = set(module.__all__) - {"__version__"}

    assert len(module.__all__) == len(set(module.__all__)), "__all__ has duplicates"
    assert exported == public_names(module)


@pytest.mark.parametrize("module", FACADES, ids=lambda m: m.__name__)
def test_every_name_in_all_resolves(module: ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]

    assert missing == []


def test_the_facade_has_a_version() -> None:
    assert isinstance(tl_core.__version__, str)
    assert "__version__" in tl_core.__all__


def test_every_error_is_a_tl_error() -> None:
    errors = [getattr(tl_core.errors, name) for name in tl_core.errors.__all__]

    assert all(issubclass(error, tl_core.TLError) for error in errors)
    assert all(getattr(tl_core, error.__name__) is error for error in errors)


def test_importing_tl_core_and_its_cli_loads_no_heavy_framework() -> None:
    probe = (
        "import json, sys\n"
        "import tl_core, tl_core.cli\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )

    assert json.loads(result.stdout) == []
