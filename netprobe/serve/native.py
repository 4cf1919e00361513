"""The native netprobe protocol, server side.

GET  /netprobe/v1/hello                      who we are, our limits (JSON)
GET  /netprobe/v1/ping                       204, for latency
GET  /netprobe/v1/download?bytes=N&test=ID   N bytes of incompressible payload
POST /netprobe/v1/upload?test=ID&stream=K    any body (chunked is fine); the answer is the
                                             receiver's series: bytes received over time,
                                             seconds since the test's first stream arrived
GET  /netprobe/v1/receipt?test=ID&direction=D  with `serve --key`: the signed receipt
                                             (serve/receipt.py)
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from netprobe import __version__
from netprobe.serve.receipt import tally_for
from netprobe.serve.state import PROTOCOL_NAMES, ServerState, int_param
from netprobe.serve.transfer import receive_body, send_payload

PREFIX = "/netprobe/v1"
SAMPLE_INTERVAL_SECONDS = 0.05
_TEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def add_routes(app: web.Application, state: ServerState) -> None:
    async def hello(request: web.Request) -> web.Response:
        limits = state.limits
        protocols: list[str] = app[PROTOCOL_NAMES]
        return web.json_response(
            {
                "service": "netprobe",
                "version": __version__,
                "protocols": sorted(protocols),
                "limits": {
                    "max_bytes_per_request": limits.max_bytes_per_request,
                    "max_request_seconds": limits.max_request_seconds,
                    "max_streams_per_test": limits.max_streams_per_test,
                },
            }
        )

    async def ping(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Cache-Control": "no-store"})

    async def download(request: web.Request) -> web.StreamResponse:
        n_bytes = int_param(request, "bytes", low=0, high=state.limits.max_bytes_per_request)
        test_id = _test_id(request)
        with state.admit(request, "native", "download", test_id) as transfer:
            tally = tally_for(request, test_id, "download")
            return await send_payload(request, state, transfer, n_bytes, on_chunk=tally)

    async def upload(request: web.Request) -> web.Response:
        test_id = _test_id(request)
        stream = int_param(request, "stream", 0, low=0, high=state.limits.max_streams_per_test)
        with state.admit(request, "native", "upload", test_id) as transfer:
            origin = state.origin(transfer.client, test_id)
            arrived = time.monotonic() - origin
            t_seconds, counts = [arrived], [0]
            tally = tally_for(request, test_id, "upload")

            def on_chunk(total: int, now: float) -> None:
                if tally is not None:
                    tally(total, now)
                # The newest point moves with every chunk until it is a full interval past
                # the one before it; then a new point starts. The last point is always current.
                t = now - origin
                if len(t_seconds) > 1 and t - t_seconds[-2] < SAMPLE_INTERVAL_SECONDS:
                    t_seconds[-1], counts[-1] = t, total
                else:
                    t_seconds.append(t)
                    counts.append(total)

            received = await receive_body(request, state, transfer, on_chunk)
        return web.json_response(
            {"stream": stream, "bytes": counts, "t_seconds": t_seconds, "received_bytes": received}
        )

    app.router.add_get(f"{PREFIX}/hello", hello)
    app.router.add_get(f"{PREFIX}/ping", ping)
    app.router.add_get(f"{PREFIX}/download", download)
    app.router.add_post(f"{PREFIX}/upload", upload)


def _test_id(request: web.Request) -> str:
    test_id = request.query.get("test", "")
    if not _TEST_ID.match(test_id):
        raise web.HTTPBadRequest(text="parameter test must be 1-64 characters of [A-Za-z0-9_-]\n")
    return test_id
