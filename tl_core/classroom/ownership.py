"""Who owns what, and who may do what with it: the class's rules, in one place.

Every run records its owner in ``run.json`` (``"owner"``: the name of the student or
teacher who submitted it; absent for runs made outside class mode). Datasets record who
uploaded them (``TL_HOME/class/datasets.json``; the same archive uploaded twice has two
owners). The teacher can share runs and datasets with the whole class
(``TL_HOME/class/shares.json``).

The rules, for an acting `Identity` (``actor=None`` is the machine's operator: the CLI, the
single-user app, scripts, who may do everything):

- The teacher sees and controls everything.
- A student stops, resumes, deletes, exports and analyses only their own runs
  (`require_run_control`), and analyses shared ones too (`require_run_analysis`).
- A student's lists show their own runs plus the shared ones (`may_list_run`); a run's
  page opened by its URL is shown to anyone signed in, read-only.
- A student uses their own datasets, the teacher's, shared ones, and those with no owner
  (the bundled sample, datasets stored before class mode) (`may_use_dataset`).

Example:
    >>> ada = Identity.student("Ada")
    >>> require_run_control(ada, "20261123-131500-a1b2c3", action="stop")  # doctest: +SKIP
    Traceback (most recent call last):
    AccessDenied: Run 20261123-131500-a1b2c3 belongs to Grace: …
"""

from __future__ import annotations

from pathlib import Path

from tl_core.classroom.identity import TEACHER_NAME, Identity, same_name
from tl_core.classroom.store import edit_json, read_record
from tl_core.errors import AccessDenied
from tl_core.fsutil import read_json
from tl_core.jobs.runs import RunFiles, run_path

__all__ = [
    "dataset_owners",
    "forget_run",
    "may_list_run",
    "may_use_dataset",
    "record_dataset_owner",
    "require_dataset",
    "require_run_analysis",
    "require_run_control",
    "require_teacher",
    "run_owner",
    "share_dataset",
    "share_run",
    "shared_datasets",
    "shared_runs",
]


def require_teacher(actor: Identity | None, *, action: str) -> None:
    """Refuse `action` (``"reorder the queue"``) unless `actor` is the teacher or the operator.

    Raises:
        AccessDenied: when `actor` is a student.
    """
    if actor is not None and not actor.is_teacher:
        raise AccessDenied(f"Only the teacher can {action}. Ask your teacher if it is needed.")


# --- runs ------------------------------------------------------------------------------------


def run_owner(run_id: str, *, home: Path | None = None) -> str | None:
    """The name that owns `run_id` (``run.json``'s ``"owner"``); ``None`` when it records none."""
    doc = read_json(RunFiles(run_path(run_id, home)).config)
    owner = doc.get("owner") if isinstance(doc, dict) else None
    return owner if isinstance(owner, str) and owner else None


def require_run_control(
    actor: Identity | None, run_id: str, *, action: str, home: Path | None = None
) -> None:
    """Refuse to `action` (``"stop"``, ``"resume"``, ``"delete"``, ``"export"``) someone
    else's run.

    Raises:
        AccessDenied: when `actor` is a student and the run is not theirs.
    """
    if actor is None or actor.is_teacher:
        return
    owner = run_owner(run_id, home=home)
    if not actor.may_act_for(owner):
        raise AccessDenied(_not_yours(run_id, owner, action))


def require_run_analysis(actor: Identity | None, run_id: str, *, home: Path | None = None) -> None:
    """Refuse to start an analysis (evaluate, Grad-CAM, embeddings, predict) of a run that is
    neither the student's own nor shared.

    Raises:
        AccessDenied: when `actor` is a student, the run is someone else's and not shared.
    """
    if run_id not in shared_runs(home=home):
        require_run_control(actor, run_id, action="analyse", home=home)


def _not_yours(run_id: str, owner: str | None, action: str) -> str:
    whose = f"belongs to {owner}" if owner else "belongs to the teacher"
    return (
        f"Run {run_id} {whose}, so you cannot {action} it; you can only look at it. "
        "Open one of your own runs from the Runs page, or ask the teacher to share this one."
    )


def may_list_run(
    actor: Identity | None, owner: str | None, run_id: str, shared: frozenset[str]
) -> bool:
    """Whether the runs lists show `run_id` (owned by `owner`) to `actor`: their own, the
    shared ones (`shared_runs`), and everything for the teacher and the operator."""
    if actor is None or actor.is_teacher or run_id in shared:
        return True
    return owner is not None and same_name(owner, actor.name)


def shared_runs(*, home: Path | None = None) -> frozenset[str]:
    """The ids of the runs the teacher shares with the class."""
    return frozenset(read_record("shares", home=home).get("runs", []))


def share_run(
    actor: Identity | None, run_id: str, shared: bool = True, *, home: Path | None = None
) -> None:
    """Share `run_id` with the whole class (or stop sharing it, `shared=False`).

    Raises:
        AccessDenied: when `actor` is a student.
        JobError: when `run_id` is malformed.
    """
    require_teacher(actor, action="share runs with the class")
    run_path(run_id, home)
    _set_shared("runs", run_id, shared, home)


def forget_run(run_id: str, *, home: Path | None = None) -> None:
    """Take a deleted run off the shared list (nothing to do outside class mode)."""
    if run_id in shared_runs(home=home):
        _set_shared("runs", run_id, False, home)


# --- datasets --------------------------------------------------------------------------------


def record_dataset_owner(
    dataset_id: str, actor: Identity | None, *, home: Path | None = None
) -> None:
    """Record that `actor` uploaded the dataset `dataset_id` (nothing for the operator)."""
    if actor is None:
        return
    with edit_json("datasets", home=home) as owners:
        names = owners.setdefault(dataset_id, [])
        if not any(same_name(name, actor.name) for name in names):
            names.append(actor.name)


def dataset_owners(dataset_id: str, *, home: Path | None = None) -> list[str]:
    """Who uploaded `dataset_id` in class mode (empty: nobody recorded, open to all)."""
    names = read_record("datasets", home=home).get(dataset_id, [])
    return [str(name) for name in names] if isinstance(names, list) else []


def may_use_dataset(actor: Identity | None, dataset_id: str, *, home: Path | None = None) -> bool:
    """Whether `actor` may see and train on `dataset_id` (module rules)."""
    if actor is None or actor.is_teacher or dataset_id in shared_datasets(home=home):
        return True
    owners = dataset_owners(dataset_id, home=home)
    return not owners or any(same_name(name, actor.name) or name == TEACHER_NAME for name in owners)


def require_dataset(actor: Identity | None, dataset_id: str, *, home: Path | None = None) -> None:
    """Refuse a dataset that `actor` may not use.

    Raises:
        AccessDenied: when `actor` is a student and the dataset is another student's.
    """
    if not may_use_dataset(actor, dataset_id, home=home):
        raise AccessDenied(
            f"Dataset {dataset_id} was uploaded by another student, so you cannot train on it. "
            "Upload your own archive on the Data page, or ask the teacher to share this one."
        )


def shared_datasets(*, home: Path | None = None) -> frozenset[str]:
    """The ids of the datasets the teacher shares with the class."""
    return frozenset(read_record("shares", home=home).get("datasets", []))


def share_dataset(
    actor: Identity | None, dataset_id: str, shared: bool = True, *, home: Path | None = None
) -> None:
    """Share `dataset_id` with the whole class (or stop, `shared=False`).

    Raises:
        AccessDenied: when `actor` is a student.
    """
    require_teacher(actor, action="share datasets with the class")
    _set_shared("datasets", dataset_id, shared, home)


def _set_shared(kind: str, item: str, shared: bool, home: Path | None) -> None:
    with edit_json("shares", home=home) as shares:
        items = set(shares.get(kind, []))
        if shared:
            items.add(item)
        else:
            items.discard(item)
        shares[kind] = sorted(items)
