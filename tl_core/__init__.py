"""tl_core: the model logic of the transfer-learning studio, free of any UI.

The facade below is the supported surface for the app, the CLI and the bench. Importing
it is cheap: TensorFlow is imported only by the functions that train or build models.

Example:
    >>> from tl_core import ingest_archive
    >>> report = ingest_archive("assets/sample_shapes.zip")  # doctest: +SKIP
    >>> report.num_images  # doctest: +SKIP
    320
"""

from tl_core.data import (
    DatasetReport,
    ImageRecord,
    IngestLimits,
    SkippedFile,
    ingest_archive,
    list_datasets,
    load_dataset,
)
from tl_core.errors import (
    ConfigError,
    DataError,
    ExportError,
    JobError,
    TLError,
    WeightsUnavailable,
)
from tl_core.workspace import tl_home

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetReport",
    "ExportError",
    "ImageRecord",
    "IngestLimits",
    "JobError",
    "SkippedFile",
    "TLError",
    "WeightsUnavailable",
    "__version__",
    "ingest_archive",
    "list_datasets",
    "load_dataset",
    "tl_home",
]
