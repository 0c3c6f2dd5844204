"""The OpenAPI 3.1 document of ``/api/`` (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"description": what, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _ok(_ref("Error"), "a bad parameter (every problem, one per line)"),
    "401": _ok(_ref("Error"), "no token"),
    "404": _ok(_ref("Error"), "no such node or instance"),
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


def _q(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": what}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": _ok(schema, summary), **_ERRORS},
        }
    }


def _post(
    summary: str, params: list[dict[str, Any]], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": _ok(_ref("Outcome"), "done; message says what happened"),
            "409": _ok(_ref("Error"), "the instance is in a state that does not allow it"),
            "422": _ok(_ref("Outcome"), "refused (a job file that does not validate)"),
            "403": _ok(_ref("Error"), "no CSRF value (cookie sessions) or a foreign Origin"),
            **_ERRORS,
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": body},
                "application/x-www-form-urlencoded": {"schema": body},
            },
        }
    return {"post": op}


_DATE = {"type": "string", "pattern": r"^\d{8}$|^\d{4}-\d{2}-\d{2}$"}
_STATE = {
    "type": "string",
    "enum": ["waiting", "running", "succeeded", "failed", "skipped", "cancelled"],
}
_N = {"type": ["number", "null"]}
_S = {"type": ["string", "null"]}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["error", "status"],
    },
    "Outcome": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "message": {"type": "string"}},
        "required": ["ok", "message"],
    },
    "Node": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "schedule": {"type": "string", "description": "the cycle in words"},
            "timezone": {"type": "string"},
            "next": {**_S, "description": "the next cyctime, with its offset"},
            "last": {"type": ["object", "null"], "description": "the latest due instance"},
            "paused": {"type": "boolean"},
            "paused_by": _S,
            "upstream": {"type": "array", "items": {"type": "string"}},
            "downstream": {"type": "array", "items": {"type": "string"}},
            "job": _S,
            "params": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["name", "schedule", "paused", "upstream", "downstream"],
    },
    "Instance": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "node": {"type": "string"},
            "cyctime": {"type": "string", "description": "YYYYMMDDHHMMSS, the node's wall time"},
            "cyctime_text": {"type": "string"},
            "bizdate": {"type": "string"},
            "batch": {"type": "string", "description": "'' for the schedule, else a backfill"},
            "state": _STATE,
            "attempts": {"type": "integer"},
            "started_at": _S,
            "finished_at": _S,
            "duration_s": _N,
            "rows_read": _N,
            "rows_written": _N,
            "rows_per_s": _N,
            "error": _S,
        },
        "required": ["id", "node", "cyctime", "bizdate", "state", "attempts"],
    },
    "InstancePage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Instance")},
            "total": {"type": "integer"},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "pages": {"type": "integer"},
            "live": {"type": "boolean", "description": "something listed runs or is due"},
        },
        "required": ["items", "total", "page", "per_page", "pages", "live"],
    },
    "InstanceDetail": {
        "allOf": [_ref("Instance")],
        "properties": {
            "params": {"type": "object", "additionalProperties": {"type": "string"}},
            "report": {"type": ["object", "null"]},
            "attempt_log": {"type": "array", "items": {"type": "object"}},
            "waiting_on": _S,
        },
    },
    "Log": {
        "type": "object",
        "properties": {
            "source": {"type": ["string", "null"], "enum": ["file", "store", None]},
            "text": {"type": "string"},
            "offset": {"type": ["integer", "null"], "description": "ask from here next"},
            "state": _STATE,
            "done": {"type": "boolean"},
        },
        "required": ["text", "offset", "state", "done"],
    },
}


def openapi() -> dict[str, Any]:
    paging = [
        _q("node", {"type": "string"}, "only this node's (repeatable)"),
        _q("state", _STATE, "only in this state (repeatable)"),
        _q("from", _DATE, "first business date"),
        _q("to", _DATE, "last business date"),
        _q("batch", {"type": "string"}, "only this backfill's ('' for the schedule's)"),
        _q("page", {"type": "integer", "minimum": 1}, "1 is the newest"),
        _q("per_page", {"type": "integer", "minimum": 1, "maximum": 500}, "default 50"),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidesync operations API",
            "version": "1",
            "description": "Every request needs the token: Authorization: Bearer TOKEN (or the "
            "page's cookie, with X-Tidesync-Csrf on POST). Times are in the project's zone "
            "with their UTC offset; a cyctime in its node's.",
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
        "paths": {
            "/api/nodes": _get("the nodes", {"type": "array", "items": _ref("Node")}, []),
            "/api/graph": _get(
                "nodes and dependency edges [upstream, downstream]", {"type": "object"}, []
            ),
            "/api/nodes/{name}": _get("one node", _ref("Node"), [_NAME]),
            "/api/nodes/{name}/history": _get(
                "the node's latest finished runs, oldest first (duration, rows/s)",
                {"type": "array", "items": {"type": "object"}},
                [_NAME, _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "")],
            ),
            "/api/instances": _get(
                "a page of instances, newest first", _ref("InstancePage"), paging
            ),
            "/api/instances/{id}": _get("one instance", _ref("InstanceDetail"), [_ID]),
            "/api/instances/{id}/log": _get(
                "the log from a byte offset (none: its end)",
                _ref("Log"),
                [_ID, _q("offset", {"type": "integer", "minimum": 0}, "")],
            ),
            "/api/instances/{id}/dirty": _get(
                "the dirty records of the last run",
                {"type": "object"},
                [_ID, _q("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "")],
            ),
            "/api/instances/{id}/rerun": _post(
                "back to waiting with fresh retries, then run it (tidesync instance rerun)", [_ID]
            ),
            "/api/instances/{id}/kill": _post("cancel it (tidesync instance kill)", [_ID]),
            "/api/nodes/{name}/pause": _post("hold its instances back (tidesync pause)", [_NAME]),
            "/api/nodes/{name}/resume": _post("let them run (tidesync resume)", [_NAME]),
            "/api/nodes/{name}/validate": _post(
                "check its job file with its latest slot's parameters", [_NAME]
            ),
            "/api/nodes/{name}/backfill": _post(
                "instances for each business date, run now (tidesync backfill)",
                [_NAME],
                {
                    "type": "object",
                    "properties": {
                        "from": _DATE,
                        "to": _DATE,
                        "parallel": {"type": "integer", "minimum": 1, "maximum": 64},
                        "with_downstream": {"type": "boolean"},
                    },
                    "required": ["from", "to"],
                },
            ),
        },
    }
