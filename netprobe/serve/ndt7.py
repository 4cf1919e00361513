"""ndt7 (M-Lab's Network Diagnostic Tool v7), server side, after the ndt7 protocol spec.

GET /ndt/v7/download   WebSocket, subprotocol net.measurementlab.ndt.v7: binary messages of
                       payload for 10 s (or until `early_exit=250` MB were sent)
GET /ndt/v7/upload     WebSocket: the client sends binary messages for up to 10 s
GET /v2/nearest/ndt/ndt7   a locate v2 answer naming this server, for discovery tests

In both subtests the server sends measurement messages (JSON text) every 250 ms:
{"AppInfo": {"ElapsedTime": µs, "NumBytes": n}, "Origin": "server", "Test": ...}. In the
upload they are the receiver's counters, from which the client takes the upload rate.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from netprobe.serve.state import ServerState, Transfer, int_param
from netprobe.serve.transfer import GONE, drop

SUBPROTOCOL = "net.measurementlab.ndt.v7"
PREFIX = "/ndt/v7"
TEST_SECONDS = 10.0
MEASUREMENT_INTERVAL_SECONDS = 0.25
# The spec lets messages grow to 16 MiB; 1 MiB keeps the counters fine-grained on slow lines.
MIN_MESSAGE_BYTES = 1 << 13
MAX_MESSAGE_BYTES = 1 << 20
# What one upload can make the server buffer: the largest message netprobe's client and
# ndt7-client-go send (1 MiB), with room; a larger message closes the upload.
MAX_RECEIVED_MESSAGE_BYTES = 1 << 21
EARLY_EXIT_MEGABYTES = (250,)
CLOSE_GRACE_SECONDS = 2.0


def measurement(test: str, started: float, num_bytes: int, connection: dict[str, str]) -> str:
    elapsed_us = int((time.monotonic() - started) * 1e6)
    return json.dumps(
        {
            "AppInfo": {"ElapsedTime": elapsed_us, "NumBytes": num_bytes},
            "ConnectionInfo": connection,
            "Origin": "server",
            "Test": test,
        }
    )


def add_routes(app: web.Application, state: ServerState) -> None:
    async def upgrade(request: web.Request) -> tuple[web.WebSocketResponse, dict[str, str]]:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            raise web.HTTPBadRequest(text=f"missing WebSocket subprotocol {SUBPROTOCOL}\n")
        # No permessage-deflate and small messages: memory follows the bytes on the wire.
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), max_msg_size=MAX_RECEIVED_MESSAGE_BYTES, compress=False
        )
        await ws.prepare(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        connection = {
            "Client": f"{peer[0]}:{peer[1]}" if peer else "",
            "Server": request.host,
            "UUID": uuid.uuid4().hex,
        }
        return ws, connection

    async def download(request: web.Request) -> web.WebSocketResponse:
        early_exit = request.query.get("early_exit")
        limit = None
        if early_exit is not None:
            megabytes = int_param(request, "early_exit")
            if megabytes not in EARLY_EXIT_MEGABYTES:
                raise web.HTTPBadRequest(text="early_exit must be 250\n")
            limit = megabytes * 1_000_000
        with state.admit(request, "ndt7", "download") as transfer:
            ws, connection = await upgrade(request)
            started = time.monotonic()
            last_report = started
            size = MIN_MESSAGE_BYTES
            payload = memoryview(state.payload)

            async def send() -> None:
                nonlocal size, last_report
                while time.monotonic() - started < TEST_SECONDS and (
                    limit is None or transfer.n_bytes < limit
                ):
                    if ws.closed:
                        return
                    await ws.send_bytes(bytes(payload[:size]))
                    transfer.n_bytes += size
                    if size < MAX_MESSAGE_BYTES and size <= transfer.n_bytes / 16:
                        size *= 2
                    if time.monotonic() - last_report >= MEASUREMENT_INTERVAL_SECONDS:
                        last_report = time.monotonic()
                        await ws.send_str(
                            measurement("download", started, transfer.n_bytes, connection)
                        )
                await ws.send_str(measurement("download", started, transfer.n_bytes, connection))

            await _bounded(request, ws, transfer, send())
        return ws

    async def upload(request: web.Request) -> web.WebSocketResponse:
        with state.admit(request, "ndt7", "upload") as transfer:
            ws, connection = await upgrade(request)
            started = time.monotonic()

            async def receive() -> None:
                last_report = started
                while (left := TEST_SECONDS - (time.monotonic() - started)) > 0:
                    try:
                        message = await ws.receive(timeout=min(left, MEASUREMENT_INTERVAL_SECONDS))
                    except TimeoutError:
                        message = None
                    if message is not None:
                        if message.type == WSMsgType.BINARY:
                            transfer.n_bytes += len(message.data)
                        elif message.type != WSMsgType.TEXT:
                            return  # close, error, too big: the client is done
                    if time.monotonic() - last_report >= MEASUREMENT_INTERVAL_SECONDS:
                        last_report = time.monotonic()
                        await ws.send_str(
                            measurement("upload", started, transfer.n_bytes, connection)
                        )
                await ws.send_str(measurement("upload", started, transfer.n_bytes, connection))

            await _bounded(request, ws, transfer, receive())
        return ws

    async def locate(request: web.Request) -> web.Response:
        host = request.host
        urls = {
            f"ws:///ndt/v7/{test}": f"ws://{host}{PREFIX}/{test}?access_token=lab"
            for test in ("download", "upload")
        }
        return web.json_response(
            {
                "results": [
                    {
                        "machine": host,
                        "location": {"city": "lab", "country": "XX"},
                        "urls": urls,
                    }
                ]
            }
        )

    app.router.add_get(f"{PREFIX}/download", download)
    app.router.add_get(f"{PREFIX}/upload", upload)
    app.router.add_get("/v2/nearest/ndt/ndt7", locate)


async def _bounded(
    request: web.Request,
    ws: web.WebSocketResponse,
    transfer: Transfer,
    subtest: Coroutine[Any, Any, None],
) -> None:
    """Run a subtest and close the socket, all within the test's time plus a grace period.

    A client that stops reading blocks the server's writes and a closing handshake that
    never completes would hold the connection: past the grace period it is dropped.
    """
    try:
        async with asyncio.timeout(TEST_SECONDS + CLOSE_GRACE_SECONDS):
            try:
                await subtest
            except GONE:
                transfer.outcome = "gone"
            await ws.close()
    except TimeoutError:
        transfer.outcome = "timeout"
        drop(request)
