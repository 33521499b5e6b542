"""Helpers shared by tests that talk to real servers: free ports, an in-process uvicorn,
and a small graphql-transport-ws client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving(app, timeout: float = TIMEOUT) -> AsyncIterator[int]:
    """The app served by uvicorn on a free loopback port, in this event loop; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()


async def send(ws, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message from the server, skipping pings."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == "ping":
            await send(ws, {"type": "pong"})
            continue
        return message


def bootstrap_token(cwd: Path, env: dict[str, str], email: str = "admin@example.com") -> str:
    """Runs `greenlight bootstrap EMAIL` and returns the token it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", "greenlight", "bootstrap", email],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


def start_serve(cwd: Path, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """Starts `greenlight serve` on 127.0.0.1:PORT, its output going to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "greenlight", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def extract_tarball(archive: tarfile.TarFile, into: Path) -> None:
    """Unpacks `archive` into `into`, refusing members that would land outside it, links and
    devices: tarfile's filter="data" where it exists (Python 3.11.4+), the same check done here
    on earlier 3.11 releases (Debian 12's python3 is 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(into, filter="data")
        return
    root = into.resolve()
    for member in archive.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise tarfile.TarError(f"refusing to unpack {member.name!r}")
    archive.extractall(into)
