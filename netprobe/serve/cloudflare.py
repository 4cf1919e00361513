"""Cloudflare-style speed test routes (as speed.cloudflare.com answers them), server side.

GET  /__down?bytes=N   N bytes of payload
POST /__up             any body, dropped

Both answer with `Server-Timing: cfRequestDuration;dur=<ms>`: the time the server spent on
the request (before the first body byte for __down, receiving the body for __up), so a client
can take it out of its round trip or time the upload where it arrived.
"""

from __future__ import annotations

import time

from aiohttp import web

from netprobe.serve.state import ServerState, int_param
from netprobe.serve.transfer import receive_body, send_payload


def server_timing(started: float) -> dict[str, str]:
    milliseconds = (time.perf_counter() - started) * 1000
    return {"Server-Timing": f"cfRequestDuration;dur={milliseconds:.3f}"}


def add_routes(app: web.Application, state: ServerState) -> None:
    async def down(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        n_bytes = int_param(request, "bytes", 0, low=0, high=state.limits.max_bytes_per_request)
        with state.admit(request, "cloudflare", "download") as transfer:
            return await send_payload(
                request, state, transfer, n_bytes, headers=server_timing(started)
            )

    async def up(request: web.Request) -> web.Response:
        started = time.perf_counter()
        with state.admit(request, "cloudflare", "upload") as transfer:
            received = await receive_body(request, state, transfer)
        return web.Response(text=f"{received}\n", headers=server_timing(started))

    app.router.add_get("/__down", down)
    app.router.add_post("/__up", up)
