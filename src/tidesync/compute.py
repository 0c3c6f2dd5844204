"""``pyarrow.compute``, imported when first used.

Importing it builds a Python function for each of its kernels: some 40 ms that every
``tidesync run`` paid before its first row, needed or not (a direct path moves bytes and
computes nothing). The engine and the connectors on every run's way (the dirty-record log, the
SQL and PostgreSQL connectors) take ``pc`` from here; a module that always computes keeps
``import pyarrow.compute as pc``. The first attribute read imports the module (Python's import
lock makes that safe from any thread); each read after costs a dictionary lookup.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pc"]


class _Compute:
    """Stands for ``pyarrow.compute``: every attribute is the module's."""

    def __getattr__(self, name: str) -> Any:
        import pyarrow.compute

        return getattr(pyarrow.compute, name)


pc: Any = _Compute()
