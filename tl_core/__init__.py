"""tl_core: the model logic of the transfer-learning studio, free of any UI.

The facade below is the supported surface for scripts and notebooks: ingest a dataset,
configure and train a run (in the foreground, or queued with `submit`; a freeze-depth
ladder with `submit_ladder`, a data-size curve with `submit_datasize`), evaluate, embed,
predict and export; report on runs in one self-contained HTML file (`write_report`) or
prepare a finished demo comparison (`prepare_demo`); fetch or import ImageNet weights for
an offline machine.

The actions on the queue take the acting person as ``actor=``: ``None`` (the default) is
the machine's operator, who may do everything; on a class server it is the signed-in
`Identity`, and a student acting on someone else's run gets `AccessDenied`
(`tl_core.classroom` has the sign-in and the rules). Importing it is cheap:
TensorFlow is imported only by the functions that build, train or run models.

Example:
    >>> from tl_core import ingest_archive
    >>> report = ingest_archive("assets/sample_shapes.zip")  # doctest: +SKIP
    >>> report.num_images  # doctest: +SKIP
    320
"""

from tl_core.analysis.datasize import datasize_results, submit_datasize
from tl_core.analysis.demo import prepare_demo
from tl_core.analysis.evaluate import embeddings, evaluate_run
from tl_core.analysis.export import export_model, model_card
from tl_core.analysis.ladder import ladder_configs, submit_ladder
from tl_core.analysis.predict import predict_images
from tl_core.analysis.report import build_report, write_report
from tl_core.classroom import Identity
from tl_core.config import FREEZE_PRESETS, RunConfig
from tl_core.data import (
    DatasetReport,
    ImageRecord,
    IngestLimits,
    SkippedFile,
    ingest_archive,
    list_datasets,
    load_dataset,
)
from tl_core.engine.train import train_run
from tl_core.errors import (
    AccessDenied,
    ConfigError,
    DataError,
    ExportError,
    JobError,
    TLError,
    WeightsUnavailable,
)
from tl_core.jobs.fairshare import QueueWait, queue_order, queue_wait
from tl_core.jobs.queue import delete_run, reorder_queue, request_stop, resume, submit
from tl_core.jobs.runs import prepare_run
from tl_core.models.backbones import BackboneSpec, get_backbone, list_backbones
from tl_core.models.weights import fetch_weights, import_weights, weights_status
from tl_core.workspace import tl_home

__version__ = "0.1.0"

__all__ = [
    "FREEZE_PRESETS",
    "AccessDenied",
    "BackboneSpec",
    "ConfigError",
    "DataError",
    "DatasetReport",
    "ExportError",
    "Identity",
    "ImageRecord",
    "IngestLimits",
    "JobError",
    "QueueWait",
    "RunConfig",
    "SkippedFile",
    "TLError",
    "WeightsUnavailable",
    "__version__",
    "build_report",
    "datasize_results",
    "delete_run",
    "embeddings",
    "evaluate_run",
    "export_model",
    "fetch_weights",
    "get_backbone",
    "import_weights",
    "ingest_archive",
    "ladder_configs",
    "list_backbones",
    "list_datasets",
    "load_dataset",
    "model_card",
    "predict_images",
    "prepare_demo",
    "prepare_run",
    "queue_order",
    "queue_wait",
    "reorder_queue",
    "request_stop",
    "resume",
    "submit",
    "submit_datasize",
    "submit_ladder",
    "tl_home",
    "train_run",
    "weights_status",
    "write_report",
]
