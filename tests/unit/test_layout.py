"""The rooms of `tl_core` keep their import rules.

- `data`, `models`, `jobs`, `classroom` and `viz` never import `engine` or `analysis` (the
  TensorFlow side and the questions asked of trained runs), not even inside a function.
- Nothing the web process imports (the facade, the UI helpers, every module outside
  `engine`) pulls in TensorFlow or Keras when imported: the app's first paint stays fast
  and the server never holds a model.
- `tl_core` never imports streamlit or the UI.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tl_core"
LOWER_ROOMS = ("data", "models", "jobs", "classroom", "viz")
UPPER_ROOMS = ("tl_core.engine", "tl_core.analysis")


def _imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in `path` (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("room", LOWER_ROOMS)
def test_lower_rooms_never_import_the_engine_or_the_analyses(room: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(PACKAGE / room)
        for name in _imported_modules(path)
        if name.startswith(UPPER_ROOMS)
    }

    assert not offenders, sorted(offenders)


def test_tl_core_never_imports_streamlit_or_the_ui() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(PACKAGE)
        for name in _imported_modules(path)
        if name.split(".")[0] in {"streamlit", "ui", "pages"}
    }

    assert not offenders, sorted(offenders)


def _web_side_modules() -> list[str]:
    """Every module the web process may import: all of tl_core but the engine, and ui/."""
    names = [
        _dotted(path)
        for path in _modules(PACKAGE)
        if "engine" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py"
    ]
    return names + [_dotted(path) for path in _modules(ROOT / "ui")]


def test_nothing_the_web_process_imports_pulls_in_tensorflow() -> None:
    script = (
        "import importlib, json, sys\n"
        f"for name in {_web_side_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps(heavy[:5]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_tree_shows_the_rooms() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}

    assert {"data", "models", "engine", "analysis", "jobs", "viz"} <= rooms
    for room in rooms:
        assert ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text())), room
