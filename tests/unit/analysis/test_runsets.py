"""The run-set store shared by ladders and data-size curves, on a kind of set of its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tl_core.analysis.runsets import RunSetStore, outcome_fields, read_outcome
from tl_core.classroom import Identity, update_class_settings
from tl_core.config import RunConfig
from tl_core.errors import AccessDenied, JobError
from tl_core.jobs import queue as jobs
from tl_core.jobs.queue import list_jobs
from tl_core.jobs.runs import RunStatus, new_run_id, run_path, write_status

CONFIG = RunConfig(dataset_id="0123456789ab", weights="none", epochs=1)


@dataclass(frozen=True)
class Batch:
    """A toy run set: only ids and runs."""

    batch_id: str
    created_at: float
    run_ids: tuple[str, ...]


def _parse(doc: Any) -> Batch | None:
    try:
        return Batch(doc["batch_id"], float(doc["created_at"]), tuple(doc["run_ids"]))
    except (KeyError, TypeError, ValueError):
        return None


STORE = RunSetStore(
    folder="batches",
    noun="batch",
    id_field="batch_id",
    pick="Pick a batch from the list.",
    fewer=lambda room: f"Queue at most {room} runs",
    parse=_parse,
)


def _record(run_ids: list[str], created_at: float = 1.0) -> Batch:
    batch = Batch(new_run_id(), created_at, tuple(run_ids))
    STORE.write(batch.batch_id, asdict(batch))
    return batch


def _queue(count: int, *, actor: Identity | None = None) -> Batch:
    return STORE.queue(
        [CONFIG] * count,
        lambda config: jobs.submit(config, actor=actor),
        _record,
        actor=actor,
    )


def test_a_queued_set_is_recorded_under_its_folder_and_loads_back(tl_home: Path) -> None:
    batch = _queue(2)

    assert (tl_home / "batches" / f"{batch.batch_id}.json").is_file()
    assert STORE.load(batch.batch_id) == batch
    assert batch.run_ids == tuple(job.run_id for job in list_jobs())


def test_a_failure_part_way_records_the_runs_queued_so_far_then_raises() -> None:
    def submit_one(config: RunConfig) -> str:
        if list_jobs():
            raise JobError("The job queue stayed busy.")
        return jobs.submit(config)

    with pytest.raises(JobError, match="stayed busy"):
        STORE.queue([CONFIG] * 3, submit_one, _record)

    (batch,) = STORE.newest_first()
    assert batch.run_ids == (list_jobs()[0].run_id,)


def test_sets_are_listed_newest_first_and_broken_files_are_skipped() -> None:
    older, newer = _record(["a"], created_at=1.0), _record(["b"], created_at=2.0)
    (STORE.directory() / "20261123-131500-abcdef.json").write_text("{not json")
    (STORE.directory() / "notes.json").write_text("{}")

    assert STORE.newest_first() == [newer, older]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261123-131500-abcdef"])
def test_an_id_that_names_no_set_is_refused_with_the_kinds_name(bad: str) -> None:
    with pytest.raises(JobError, match=r"batch .*Pick a batch from the list") as info:
        STORE.load(bad)

    assert "/" not in str(info.value).replace(bad, "")


def test_a_student_without_room_for_every_run_queues_none() -> None:
    ada = Identity.student("Ada")
    update_class_settings(Identity.teacher(), max_active_runs=2)

    with pytest.raises(AccessDenied, match=r"This batch queues 3 runs.*Queue at most 2 runs"):
        _queue(3, actor=ada)

    assert list_jobs() == []
    assert STORE.newest_first() == []
    assert len(_queue(2, actor=ada).run_ids) == 2


def test_a_runs_outcome_is_its_state_and_accuracy_or_missing_without_a_folder() -> None:
    (run_id,) = _queue(1).run_ids
    write_status(run_path(run_id), RunStatus(state="running"))

    outcome = read_outcome(run_id)

    assert outcome is not None and outcome.root == run_path(run_id)
    assert outcome_fields(outcome) == {"state": "running", "best_val_accuracy": None}
    assert outcome_fields(read_outcome("20261123-131500-a1b2c3")) == {
        "state": "missing",
        "best_val_accuracy": None,
    }
