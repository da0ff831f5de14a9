"""Small network helpers shared by the tests, benchmarks and scripts: a free port, and a
``robust-style serve`` child process that is ready before it is used."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["free_port", "ServeProcess", "serve_process"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServeProcess:
    """A running ``robust-style serve`` child: its process, gRPC port and seconds to ready."""

    proc: subprocess.Popen[Any]
    port: int
    ready_seconds: float

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_process(args: Sequence[str] = (), *, command: Sequence[str] | None = None,
                  quiet: bool = True, ready_timeout: float = 300.0,
                  env: dict[str, str] | None = None, stdout: IO[Any] | int | None = None,
                  stderr: IO[Any] | int | None = None, cwd: str | None = None,
                  ) -> Iterator[ServeProcess]:
    """Start ``serve`` on a free port (``--metrics-port -1`` and ``--http-port -1`` unless
    ``args`` set them), wait until its gRPC health says ready, and stop it (SIGTERM, then
    kill) on exit.

    ``command`` replaces ``python -m robust_style`` (an installed ``robust-style``, another
    Python). Raises :class:`RuntimeError` when the server exits or is not ready in time.
    """
    from robust_style.server.client import StyleClient

    port = free_port()
    cmd = [*(command or (sys.executable, "-m", "robust_style"))]
    if quiet:
        cmd.append("-q")
    cmd += ["serve", "--port", str(port), *args]
    if "--metrics-port" not in args:
        cmd += ["--metrics-port", "-1"]
    if "--http-port" not in args:
        cmd += ["--http-port", "-1"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, cwd=cwd)
    try:
        with StyleClient(f"127.0.0.1:{port}") as client:
            deadline = t0 + ready_timeout
            while not client.wait_ready(min(5.0, max(0.1, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited with code {proc.returncode} before it "
                                       f"was ready: {' '.join(cmd)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"serve not ready in {ready_timeout:g} s: {' '.join(cmd)}")
        yield ServeProcess(proc, port, time.monotonic() - t0)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
