"""Datasets: safe ingest of labeled image zips and the reports they produce."""

from tl_core.data.archive import ingest_archive, list_datasets, load_dataset
from tl_core.data.report import DatasetReport, ImageRecord, IngestLimits, SkippedFile

__all__ = [
    "DatasetReport",
    "ImageRecord",
    "IngestLimits",
    "SkippedFile",
    "ingest_archive",
    "list_datasets",
    "load_dataset",
]
