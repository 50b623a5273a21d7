"""Who may do what with runs and datasets (`tl_core.classroom.ownership`)."""

from __future__ import annotations

import pytest

from tests.unit.jobs.queue_support import CONFIG
from tl_core.classroom.identity import Identity
from tl_core.classroom.ownership import (
    dataset_owners,
    may_list_run,
    may_use_dataset,
    record_dataset_owner,
    require_dataset,
    require_run_analysis,
    require_run_control,
    require_teacher,
    run_owner,
    share_dataset,
    share_run,
    shared_datasets,
    shared_runs,
)
from tl_core.errors import AccessDenied, JobError
from tl_core.jobs import queue as jobs

ADA, GRACE, TEACHER = Identity.student("Ada"), Identity.student("Grace"), Identity.teacher()
DATASET = "0123456789ab"


# --- runs ------------------------------------------------------------------------------------


def test_a_run_is_owned_by_its_submitter_and_an_operators_run_by_nobody() -> None:
    assert run_owner(jobs.submit(CONFIG, actor=ADA)) == "Ada"
    assert run_owner(jobs.submit(CONFIG)) is None
    assert run_owner("20990101-000000-abcdef") is None


@pytest.mark.parametrize("action", ["stop", "resume", "delete", "export"])
def test_a_student_controls_their_own_run_only(action: str) -> None:
    mine, hers = jobs.submit(CONFIG, actor=ADA), jobs.submit(CONFIG, actor=GRACE)

    require_run_control(Identity.student("ada"), mine, action=action)
    with pytest.raises(AccessDenied, match=f"belongs to Grace, so you cannot {action} it"):
        require_run_control(ADA, hers, action=action)


def test_a_run_with_no_owner_belongs_to_the_teacher() -> None:
    run_id = jobs.submit(CONFIG)

    with pytest.raises(AccessDenied, match="belongs to the teacher"):
        require_run_control(ADA, run_id, action="stop")


@pytest.mark.parametrize("actor", [TEACHER, None], ids=["teacher", "operator"])
def test_the_teacher_and_the_operator_control_every_run(actor: Identity | None) -> None:
    run_id = jobs.submit(CONFIG, actor=GRACE)

    require_run_control(actor, run_id, action="delete")
    require_run_analysis(actor, run_id)


def test_a_student_analyses_another_students_run_only_once_it_is_shared() -> None:
    run_id = jobs.submit(CONFIG, actor=GRACE)
    with pytest.raises(AccessDenied, match="cannot analyse it"):
        require_run_analysis(ADA, run_id)

    share_run(TEACHER, run_id)

    require_run_analysis(ADA, run_id)
    assert shared_runs() == frozenset({run_id})
    with pytest.raises(AccessDenied):
        require_run_control(ADA, run_id, action="stop")  # shared to look at, not to control


def test_only_the_teacher_shares_runs_and_sharing_can_be_undone() -> None:
    run_id = jobs.submit(CONFIG, actor=GRACE)

    with pytest.raises(AccessDenied, match="Only the teacher can share runs"):
        share_run(ADA, run_id)
    share_run(TEACHER, run_id)
    share_run(TEACHER, run_id, shared=False)

    assert shared_runs() == frozenset()
    with pytest.raises(JobError, match="Expected a run id"):
        share_run(TEACHER, "../etc")


def test_lists_show_a_student_their_own_and_shared_runs_and_everyone_everything() -> None:
    shared = frozenset({"20261123-131500-000002"})

    assert may_list_run(ADA, "ada", "20261123-131500-000001", frozenset())
    assert may_list_run(ADA, "Grace", "20261123-131500-000002", shared)
    assert not may_list_run(ADA, "Grace", "20261123-131500-000003", shared)
    assert not may_list_run(ADA, None, "20261123-131500-000004", shared)
    assert may_list_run(TEACHER, "Grace", "20261123-131500-000003", frozenset())
    assert may_list_run(None, "Grace", "20261123-131500-000003", frozenset())


def test_require_teacher_refuses_a_student_with_the_action() -> None:
    require_teacher(TEACHER, action="pause the class")
    require_teacher(None, action="pause the class")
    with pytest.raises(AccessDenied, match="Only the teacher can pause the class"):
        require_teacher(ADA, action="pause the class")


# --- datasets --------------------------------------------------------------------------------


def test_an_uploader_is_recorded_once_and_the_operator_not_at_all() -> None:
    record_dataset_owner(DATASET, ADA)
    record_dataset_owner(DATASET, Identity.student("ada"))
    record_dataset_owner(DATASET, GRACE)
    record_dataset_owner(DATASET, None)

    assert dataset_owners(DATASET) == ["Ada", "Grace"]
    assert dataset_owners("ffffffffffff") == []


def test_a_student_uses_their_own_the_teachers_shared_and_unowned_datasets() -> None:
    record_dataset_owner("aaaaaaaaaaaa", ADA)
    record_dataset_owner("bbbbbbbbbbbb", TEACHER)
    record_dataset_owner("cccccccccccc", GRACE)

    assert may_use_dataset(ADA, "aaaaaaaaaaaa")
    assert may_use_dataset(ADA, "bbbbbbbbbbbb")
    assert may_use_dataset(ADA, "dddddddddddd")  # nobody recorded: the sample, older data
    assert not may_use_dataset(ADA, "cccccccccccc")
    assert may_use_dataset(TEACHER, "cccccccccccc")
    assert may_use_dataset(None, "cccccccccccc")


def test_another_students_dataset_is_refused_until_the_teacher_shares_it() -> None:
    record_dataset_owner(DATASET, GRACE)
    with pytest.raises(AccessDenied, match="uploaded by another student"):
        require_dataset(ADA, DATASET)
    with pytest.raises(AccessDenied, match="Only the teacher can share datasets"):
        share_dataset(ADA, DATASET)

    share_dataset(TEACHER, DATASET)

    require_dataset(ADA, DATASET)
    assert shared_datasets() == frozenset({DATASET})
    share_dataset(TEACHER, DATASET, shared=False)
    assert not may_use_dataset(ADA, DATASET)
