"""The built-in load generator (bench/load.py) against a stub server slower than the run:
without `min_answers` it counts nothing (every answer comes after the deadline); with it,
the run goes on until that many answers, and with `to_last_answer` the rate is the
stub's real one (two clients, an answer each per 0.5 s: 4 requests/s), not one charged
for the time the cut-off answers took."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest

from bench import load

DELAY = 0.5
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"data":{}}'


@contextlib.contextmanager
def slow_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                await asyncio.sleep(DELAY)
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def serve():
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def spec(port: int, **extra) -> load.Spec:
    return load.Spec(
        port=port, connections=2, duration=0.2, token="", variants=[["t", "{}"]], cycle=True, **extra
    )


def test_a_server_slower_than_the_run_gets_a_figure_with_min_answers():
    with slow_server() as port:
        cut = load.builtin(spec(port))
        assert cut.requests == 0
        counted = load.builtin(spec(port, min_answers=4, to_last_answer=True))
        assert counted.requests == 4
        assert counted.errors == 0
        assert counted.rps == pytest.approx(2 / DELAY, rel=0.25)
