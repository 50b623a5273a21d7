"""Class mode: who is who (`identity`, `roster`), who may do what (`ownership`), and the
teacher's limits (`settings`).

Off by default: a personal studio has no sign-in, and every core function called with
``actor=None`` acts for the machine's operator. `load_class_config` says whether a class
is configured.
"""

from tl_core.classroom.identity import (
    TEACHER_NAME,
    ClassConfig,
    Identity,
    hash_password,
    load_class_config,
)
from tl_core.classroom.ownership import (
    may_list_run,
    may_use_dataset,
    record_dataset_owner,
    require_dataset,
    require_run_analysis,
    require_run_control,
    require_teacher,
    run_owner,
    share_run,
    shared_runs,
)
from tl_core.classroom.roster import (
    SignedIn,
    identity_from_oidc,
    identity_from_token,
    join_class,
    list_students,
    release_name,
    sign_in_teacher,
)
from tl_core.classroom.settings import ClassSettings, read_class_settings, update_class_settings

__all__ = [
    "TEACHER_NAME",
    "ClassConfig",
    "ClassSettings",
    "Identity",
    "SignedIn",
    "hash_password",
    "identity_from_oidc",
    "identity_from_token",
    "join_class",
    "list_students",
    "load_class_config",
    "may_list_run",
    "may_use_dataset",
    "read_class_settings",
    "record_dataset_owner",
    "release_name",
    "require_dataset",
    "require_run_analysis",
    "require_run_control",
    "require_teacher",
    "run_owner",
    "share_run",
    "shared_runs",
    "sign_in_teacher",
    "update_class_settings",
]
