"""A local Ray cluster of two nodes for the tests: one ``ray start --head`` and one
``ray start --address`` on this machine (standing for a second node), both on 127.0.0.1, both in
the foreground (``--block``) so that stopping them stops only what they started.

``ray_cluster`` (session scope) starts it once and connects this process to it through the
executor's own :func:`tidesync.engine.ray_executor.connect` (so every test after it uses it).
Without Ray installed it skips, except under ``CI=true``, where ``make test``'s environment has
the ``ray`` extra and a missing one fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: logical CPUs of each node: 2 + 2, so four splits run at once across the two nodes
NODE_CPUS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [
            ray,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={NODE_CPUS}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as a whole, and only it
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the nodes' process groups (Ray's processes and workers run in them): asked first,
    then killed; a test cluster keeps nothing worth a slow shutdown."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        if all(p.poll() is not None for p in procs):
            return


def _wait_nodes(ray: object, n: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = [x for x in ray.nodes() if x["Alive"]]  # type: ignore[attr-defined]
        if len(alive) >= n:
            return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a ray start process ended")
        time.sleep(0.5)
    raise RuntimeError(f"the test Ray cluster did not reach {n} nodes in 120 s")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    try:
        import ray  # noqa: F401
    except ImportError:
        msg = "Ray is not installed (pip install 'tidesync[ray]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: make test installs the ray extra)")
        pytest.skip(msg)
    import ray

    from tidesync.engine.ray_executor import connect

    # a cluster of this test run only, on loopback: no usage statistics, no token to share
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    os.environ.update(quiet)
    env = {**os.environ, **quiet}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs = [_start(["--head", f"--port={port}", "--include-dashboard=false"], env)]
    try:
        deadline = time.monotonic() + 120
        while True:  # the head listens: the second node may join
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ray start --head did not come up") from None
                time.sleep(0.5)
        procs.append(_start([f"--address={address}"], env))
        connect(address, 0)
        _wait_nodes(ray, 2, procs)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(procs)
