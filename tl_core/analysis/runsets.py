"""Run sets: runs queued with one click and recorded together (a ladder, a data-size curve).

A run set is recorded in ``TL_HOME/<folder>/<set_id>.json``. Its id is generated (the shape
of run ids: UTC time and random bits), never taken from user input as a path. Its runs are
ordinary queued jobs (`tl_core.jobs.queue.submit`) sharing the queue with every other run.
`RunSetStore` holds what the kinds share: where records live, queueing every run (or none
when a student has no room under the class's run limit), loading, listing, and reading each
run's outcome back from its folder.

Example:
    >>> store = RunSetStore(  # doctest: +SKIP
    ...     folder="ladders", noun="ladder", id_field="ladder_id",
    ...     pick="Pick a ladder from the list.", fewer=lambda room: f"Pick at most {room} depths",
    ...     parse=parse_ladder,
    ... )
    >>> store.newest_first()  # doctest: +SKIP
    []
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tl_core.classroom.identity import Identity
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied, JobError
from tl_core.jobs.queue import active_run_count, active_run_limit
from tl_core.jobs.runs import (
    RunSummary,
    read_json,
    read_metrics,
    run_path,
    summarize_run,
    write_json_atomic,
)
from tl_core.workspace import safe_join, tl_home

__all__ = ["RunOutcome", "RunSetStore", "outcome_fields", "read_outcome"]

T = TypeVar("T")

_SET_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


@dataclass(frozen=True)
class RunSetStore(Generic[T]):
    """Where one kind of run set is recorded, and how it is named to a user.

    Attributes:
        folder: the folder under ``TL_HOME`` (``"ladders"``).
        noun: the kind as a user reads it (``"ladder"``, ``"data-size curve"``).
        id_field: the record's id key, also the parsed record's id attribute
            (``"ladder_id"``).
        pick: the sentence telling a user where to find a valid id.
        fewer: given the runs a student still has room for, what to ask for instead.
        parse: a record file's contents as a run set; ``None`` for anything malformed.
    """

    folder: str
    noun: str
    id_field: str
    pick: str
    fewer: Callable[[int], str]
    parse: Callable[[Any], T | None]

    def directory(self, home: Path | None = None) -> Path:
        """Return ``TL_HOME/<folder>``, created when missing."""
        path = (home or tl_home()) / self.folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, set_id: str, home: Path | None = None) -> Path:
        """Return the record file of `set_id`.

        Raises:
            JobError: when `set_id` does not have the shape of a generated id.
        """
        if not isinstance(set_id, str) or not _SET_ID.fullmatch(set_id):
            raise JobError(
                f"Expected a {self.noun} id like '20261123-131500-a1b2c3'. Received: "
                f"{self.id_field}={set_id!r}. {self.pick}"
            )
        return safe_join(self.directory(home), f"{set_id}.json")

    def write(self, set_id: str, doc: dict[str, Any], home: Path | None = None) -> None:
        """Write the record of `set_id` atomically."""
        write_json_atomic(self.path(set_id, home), doc)

    def load(self, set_id: str, home: Path | None = None) -> T:
        """Read the run set `set_id`.

        Raises:
            JobError: when the id is malformed or names no (readable) record.
        """
        run_set = self.parse(read_json(self.path(set_id, home)))
        if run_set is None or getattr(run_set, self.id_field) != set_id:
            raise JobError(
                f"There is no {self.noun} {set_id} (or its file is unreadable). {self.pick}"
            )
        return run_set

    def newest_first(self, home: Path | None = None) -> list[T]:
        """Return every recorded run set, newest first; unreadable files are left out."""
        found = []
        for path in self.directory(home).glob("*.json"):
            if not _SET_ID.fullmatch(path.stem):
                continue
            run_set = self.parse(read_json(path))
            if run_set is not None and getattr(run_set, self.id_field) == path.stem:
                found.append(run_set)
        return sorted(
            found,
            key=lambda run_set: (run_set.created_at, getattr(run_set, self.id_field)),
            reverse=True,
        )

    def queue(
        self,
        configs: Sequence[RunConfig],
        submit_one: Callable[[RunConfig], str],
        record: Callable[[list[str]], T],
        *,
        base_run_id: str | None = None,
        actor: Identity | None = None,
        home: Path | None = None,
    ) -> T:
        """Queue every config with `submit_one` and `record` the run ids as one run set.

        A student's room under the class's run limit, and `base_run_id`'s shape, are checked
        before the first run is queued. Should the queue fail part way, the runs queued so
        far are still recorded, then the error is raised.

        Args:
            configs: the runs to queue, in order.
            submit_one: queues one config and returns its run id.
            record: writes the run set of the given run ids and returns it.
            base_run_id: the run the configs came from (default ``None``).
            actor: who queues the runs (default ``None``: the operator).
            home: the workspace root (default ``TL_HOME``).

        Raises:
            AccessDenied: when a student has no room for every config.
            JobError: when the queue cannot take the runs, or `base_run_id` is malformed.
        """
        self._check_room(actor, len(configs), home)
        if base_run_id is not None:
            run_path(base_run_id, home)  # refuses an id of the wrong shape
        run_ids: list[str] = []
        try:
            for config in configs:
                run_ids.append(submit_one(config))
        except BaseException:
            if run_ids:
                record(run_ids)
            raise
        return record(run_ids)

    def _check_room(self, actor: Identity | None, wanted: int, home: Path | None) -> None:
        """Refuse a run set that would take a student over the class's run limit, before
        any run is queued (a half-queued set would only confuse)."""
        limit = active_run_limit(actor, home=home)
        if limit is None:
            return
        active = active_run_count(actor, home=home)
        if active + wanted > limit:
            raise AccessDenied(
                f"This {self.noun} queues {wanted} runs, and you have {active} waiting or "
                f"training already; the class's limit per student is {limit}. "
                f"{self.fewer(max(limit - active, 0))}, or ask the teacher to raise the limit."
            )


@dataclass(frozen=True)
class RunOutcome:
    """What a run set reads back from one of its runs' folders."""

    root: Path
    epochs: list[dict[str, Any]]
    summary: RunSummary


def read_outcome(run_id: str, home: Path | None = None) -> RunOutcome | None:
    """Return the run's folder, epoch lines and summary; ``None`` when its folder is gone.

    Example:
        >>> read_outcome("20261123-131500-a1b2c3").summary.state  # doctest: +SKIP
        'completed'
    """
    try:
        root = run_path(run_id, home)
        epochs, _ = read_metrics(root)
        summary = summarize_run(run_id, home, epochs=epochs)
    except JobError:
        return None
    return RunOutcome(root, epochs, summary)


def outcome_fields(outcome: RunOutcome | None) -> dict[str, Any]:
    """Return a result row's ``state`` (``"missing"`` without a folder) and
    ``best_val_accuracy`` (``None`` until an epoch has ended).

    Example:
        >>> outcome_fields(None)
        {'state': 'missing', 'best_val_accuracy': None}
    """
    if outcome is None:
        return {"state": "missing", "best_val_accuracy": None}
    return {"state": outcome.summary.state, "best_val_accuracy": outcome.summary.best_val_accuracy}
