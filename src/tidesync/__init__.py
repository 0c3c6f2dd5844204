"""tidesync: sync data between stores, full or incremental, on a schedule, atomically.

The public surface: the connector contracts, the error tree, and running a job from Python::

    from tidesync import load_job, run_job
    report = run_job(load_job("job.json", {"filename": "201911062315"}))
    assert report.status == "succeeded"
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: where each public name lives; imported on first use, so that ``tidesync.cli`` starts without
#: loading Arrow before it has set up the process
_HOMES = {
    **dict.fromkeys(
        ("Chunk", "Context", "Dirty", "Reader", "Sink", "Split", "Writer"), "connectors.base"
    ),
    **dict.fromkeys(("Report", "load_job", "run_job"), "engine.runner"),
    **dict.fromkeys(
        (
            "ConfigError",
            "DirtyRecordError",
            "ErrorLimitExceeded",
            "FatalError",
            "RetriableError",
            "TidesyncError",
        ),
        "errors",
    ),
    "Transform": "transforms.base",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tidesync' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tidesync.{home}"), name)
    globals()[name] = value
    return value


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
