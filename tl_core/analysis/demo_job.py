"""The demo (`tl_core.analysis.demo`) prepared in a background process, for the web app.

Preparing the demo trains two runs, so it loads TensorFlow: the web process never does
that, so the Runs page asks for it like any analysis (`tl_core.analysis.background`),
running ``python -m tl_core demo --json`` in a process of its own. The demo belongs to
no run: its process's files live in ``TL_HOME/demo/analysis/`` beside the demo's own
record and report, and one prepared demo is shared by every session. Only the teacher
(and the operator, outside class mode) may prepare it: it trains on the server.

Example:
    >>> request_demo(actor=None).state  # doctest: +SKIP
    'running'
    >>> request_demo(actor=None).result["run_ids"]  # doctest: +SKIP
    ['20261207-090000-aaaaaa', '20261207-090130-bbbbbb']
"""

from __future__ import annotations

from pathlib import Path

from tl_core.analysis.background import Analysis, forget_analysis, request_analysis
from tl_core.analysis.demo import DEMO_FOLDER
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import require_teacher
from tl_core.workspace import tl_home

__all__ = ["DEMO_ARGS", "demo_folder", "forget_demo", "request_demo", "require_demo_access"]

#: The CLI arguments of the demo, without ``--json``.
DEMO_ARGS = ("demo",)


def demo_folder(home: Path | None = None) -> Path:
    """The folder the demo's background process belongs to: ``TL_HOME/demo``.

    Example:
        >>> demo_folder(Path("/w")).as_posix()
        '/w/demo'
    """
    return (home or tl_home()) / DEMO_FOLDER


def require_demo_access(actor: Identity | None) -> None:
    """Refuse a student the demo: preparing it trains two runs on the shared server.

    Raises:
        AccessDenied: `actor` is a student.

    Example:
        >>> require_demo_access(None)  # the operator: allowed
    """
    require_teacher(actor, action="prepare a demo")


def request_demo(*, actor: Identity | None = None, start: bool = True) -> Analysis:
    """Return where the background demo stands, starting it when nobody has yet.

    Args:
        actor: who asks (default ``None``: the operator); only the teacher or the
            operator may.
        start: start the process when there is no result, error or running process
            (default True; with False such a demo reads as ``"failed"``).

    Returns:
        The `Analysis`; once ready, its ``result`` is `Demo.to_json` (``run_ids``,
        ``report``, ``start``, ``dataset_id``).

    Raises:
        AccessDenied: `actor` is a student; nothing is started.
        JobError: the process cannot be started.

    Example:
        >>> request_demo(actor=Identity.teacher()).state  # doctest: +SKIP
        'running'
    """
    require_demo_access(actor)
    folder = demo_folder()
    # The access rule is the one above: the demo is no one's run, so none of the run
    # ownership checks of `request_analysis` apply to it.
    return request_analysis(folder, DEMO_ARGS, start=start)


def forget_demo(*, actor: Identity | None = None) -> None:
    """Drop the kept demo result (or failure), so that the next request prepares it again.

    Raises:
        AccessDenied: `actor` is a student.

    Example:
        >>> forget_demo()  # doctest: +SKIP
    """
    require_demo_access(actor)
    forget_analysis(demo_folder(), DEMO_ARGS)
