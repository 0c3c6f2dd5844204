"""DataX and DataWorks keys that tidesync knows and deliberately ignores: the one table.

Any other key that tidesync does not read is an error ("unknown key", with a did-you-mean), so a
typo such as ``wehre`` or ``speed.chanel`` can never run silently. A key listed here is one that
real DataX/DataWorks jobs carry and whose absence of effect cannot change what a run moves
(engine tuning, editor metadata): it is reported once, in one ``info`` line, and the job runs.

Keys are written without the shape's prefix: ``core`` and ``setting.jvmOption`` are found under
``job.`` (DataX), ``configuration.`` (script mode v1) or at the top (script mode v2);
``parameter.fetchSize`` is a key of any reader's or writer's ``parameter`` that the connector
does not read (a connector that reads ``fetchSize`` uses it, and it is never reported).
"""

from __future__ import annotations

__all__ = ["IGNORED", "why_ignored", "info_line"]

#: key (see the module docstring) -> why tidesync can leave it out
IGNORED: dict[str, str] = {
    "core": "DataX engine settings; tidesync runs its own engine",
    "setting.jvmOption": "JVM options; tidesync does not run on a JVM",
    "setting.executeMode": "DataWorks distributed execution; tidesync plans its own splits",
    # read past only while speed.throttle is false (spec/job.py says when)
    "setting.speed.byte": "no limit applies while speed.throttle is false",
    "setting.speed.mbps": "no limit applies while speed.throttle is false",
    "setting.speed.record": "no limit applies while speed.throttle is false",
    "parameter.fetchSize": "JDBC fetch tuning; this connector reads in Arrow batches",
    "parameter.batchSize": "JDBC write batching; this connector writes whole Arrow batches",
    "parameter.batchByteSize": "JDBC write batching; this connector writes whole Arrow batches",
    "parameter.splitFactor": "DataX split tuning; splits follow speed.concurrent",
    "parameter.encoding": "this connector has no text encoding to set",
    "parameter.mandatoryEncoding": "DataX JDBC encoding override; the drivers negotiate it",
    "parameter.envType": "DataWorks marks of a data source's environment",
    "parameter.tableComment": "DataWorks editor metadata",
}


def why_ignored(path: str) -> str | None:
    """The reason ``path`` (a full key path) is in the table, or None.

    >>> why_ignored("job.content[0].reader.parameter.fetchSize")[:4]
    'JDBC'
    >>> why_ignored("job.setting.jvmOption")[:3]
    'JVM'
    >>> why_ignored("job.content[0].reader.parameter.wehre") is None
    True
    """
    parts = path.split(".")
    if len(parts) >= 3 and parts[-2] == "parameter":
        return IGNORED.get(f"parameter.{parts[-1]}")
    if parts[0] in ("job", "configuration") and parts[1:2] == ["setting"]:
        parts = parts[1:]
    key = ".".join(parts)
    return None if key.startswith("parameter.") else IGNORED.get(key)


def info_line(paths: list[str]) -> str:
    """One line naming every ignored key, grouped by reason (empty when there is none)."""
    groups: dict[str, list[str]] = {}
    for p in dict.fromkeys(paths):
        groups.setdefault(why_ignored(p) or "ignored", []).append(p)
    if not groups:
        return ""
    return "ignored, as tidesync does not need them: " + "; ".join(
        f"{', '.join(ps)} ({why})" for why, ps in groups.items()
    )
