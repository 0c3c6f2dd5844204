"""Where a lake table lives and in which format: the parameters the lake reader and writer share."""

from __future__ import annotations

from typing import Any

from tidesync.connectors import base
from tidesync.connectors.partition import parse_partition

FORMATS = ("iceberg", "hive")


class _Common:
    """Parameters the reader and the writer share."""

    def __init__(self, p: base.Params, ctx: base.Context):
        self.format = p.str("format", "iceberg", choices=(*FORMATS, "parquet"), lower=True)
        if self.format == "parquet":
            self.format = "hive"
        self.table = p.str("table", required=True)
        if isinstance(self.table, str) and self.format == "iceberg":
            parts = self.table.split(".")
            if any(not s.strip() for s in parts):
                p.problem("table", f"{self.table!r} is not namespace.name, e.g. ods.ods_oplog")
        raw = p.str("partition")
        self.partition: list[tuple[str, str]] = []
        if raw is not None:
            try:
                self.partition = parse_partition(raw)
            except ValueError as e:
                p.problem("partition", f"{raw!r}: {e}")
        self.warehouse = ctx.resolve_path(p.str("warehouse", "warehouse"))
        self.catalog = p.get("catalog")
        if self.catalog is not None and not isinstance(self.catalog, str | dict):
            p.problem("catalog", "must be catalog properties (an object) or a catalog URI")
        if self.catalog is not None and self.format == "hive":
            p.problem("catalog", "applies to format iceberg only")
        cols = p.list("column")
        self.columns: list[str] | None = None
        if cols is not None and cols != ["*"]:
            self.columns = []
            for i, c in enumerate(cols):
                name = c.get("name") if isinstance(c, dict) else c
                if not isinstance(name, str) or not name:
                    p.problem(f"column[{i}]", f"must be a column name, got {c!r}")
                else:
                    self.columns.append(name)
        self.ctx = ctx
        self.p = p

    def backend(self) -> Any:
        ctx = self.ctx
        if self.format == "hive":
            from tidesync.connectors.lake.hive import HiveTable

            return HiveTable(
                root=ctx.resolve_path(self.table),
                partition=self.partition,
                where=ctx.where,
                table_key=ctx.path("table"),
                partition_key=ctx.path("partition"),
                compression=getattr(self, "compress", "snappy"),
            )
        from tidesync.connectors.lake.iceberg import IcebergTable

        return IcebergTable(
            table=self.table,
            catalog=self.catalog,
            warehouse=self.warehouse,
            partition=self.partition,
            where=ctx.where,
            table_key=ctx.path("table"),
            partition_key=ctx.path("partition"),
        )
