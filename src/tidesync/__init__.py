"""tidesync: sync data between stores, full or incremental, on a schedule, atomically.

The public surface: the connector contracts, the error tree, and running a job from Python::

    from tidesync import load_job, run_job
    report = run_job(load_job("job.json", {"filename": "201911062315"}))
    assert report.status == "succeeded"
"""

from tidesync.connectors.base import Chunk, Context, Dirty, Reader, Sink, Split, Writer
from tidesync.engine.runner import Report, load_job, run_job
from tidesync.errors import (
    ConfigError,
    DirtyRecordError,
    ErrorLimitExceeded,
    FatalError,
    RetriableError,
    TidesyncError,
)
from tidesync.transforms.base import Transform

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "ConfigError",
    "Context",
    "Dirty",
    "DirtyRecordError",
    "ErrorLimitExceeded",
    "FatalError",
    "Reader",
    "Report",
    "RetriableError",
    "Sink",
    "Split",
    "TidesyncError",
    "Transform",
    "Writer",
    "load_job",
    "run_job",
]
