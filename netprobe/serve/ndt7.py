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

import json
import time
import uuid

from aiohttp import WSMsgType, web

from netprobe.serve.state import ServerState, int_param

SUBPROTOCOL = "net.measurementlab.ndt.v7"
PREFIX = "/ndt/v7"
TEST_SECONDS = 10.0
MEASUREMENT_INTERVAL_SECONDS = 0.25
# The spec lets messages grow to 16 MiB; 1 MiB keeps the counters fine-grained on slow lines.
MIN_MESSAGE_BYTES = 1 << 13
MAX_MESSAGE_BYTES = 1 << 20
EARLY_EXIT_MEGABYTES = (250,)


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
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), max_msg_size=MAX_MESSAGE_BYTES * 16, autoping=True
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
        with state.admit(None):
            ws, connection = await upgrade(request)
            started = time.monotonic()
            last_report = started
            sent, size = 0, MIN_MESSAGE_BYTES
            payload = memoryview(state.payload)
            try:
                while time.monotonic() - started < TEST_SECONDS and (limit is None or sent < limit):
                    if ws.closed:
                        break
                    await ws.send_bytes(bytes(payload[:size]))
                    sent += size
                    if size < MAX_MESSAGE_BYTES and size <= sent / 16:
                        size *= 2
                    if time.monotonic() - last_report >= MEASUREMENT_INTERVAL_SECONDS:
                        last_report = time.monotonic()
                        await ws.send_str(measurement("download", started, sent, connection))
                if not ws.closed:
                    await ws.send_str(measurement("download", started, sent, connection))
            except (ConnectionError, RuntimeError):
                pass
            await ws.close()
        return ws

    async def upload(request: web.Request) -> web.WebSocketResponse:
        with state.admit(None):
            ws, connection = await upgrade(request)
            started = time.monotonic()
            last_report = started
            received = 0
            try:
                while (left := TEST_SECONDS - (time.monotonic() - started)) > 0:
                    try:
                        message = await ws.receive(timeout=min(left, MEASUREMENT_INTERVAL_SECONDS))
                    except TimeoutError:
                        message = None
                    if message is not None:
                        if message.type == WSMsgType.BINARY:
                            received += len(message.data)
                        elif message.type != WSMsgType.TEXT:
                            break  # close, error: the client is done
                    if time.monotonic() - last_report >= MEASUREMENT_INTERVAL_SECONDS:
                        last_report = time.monotonic()
                        await ws.send_str(measurement("upload", started, received, connection))
                if not ws.closed:
                    await ws.send_str(measurement("upload", started, received, connection))
            except (ConnectionError, RuntimeError):
                pass
            await ws.close()
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
