"""LibreSpeed's backend, server side, laid out like upstream (backend/garbage.php, ...).

GET      /backend/garbage.php?ckSize=N   N chunks of 1 MiB (default 4, at most 1024)
GET/POST /backend/empty.php              empty 200; an upload's body is read and dropped
GET      /backend/getIP.php              {"processedString": "<client ip>", "rawIspInfo": ""}

The same routes answer without ".php" (the Go backend, speedtest-go, names them so). A
LibreSpeed client given http://HOST:PORT/backend as its server works against these routes.
"""

from __future__ import annotations

from aiohttp import web

from netprobe.serve.state import ServerState, int_param
from netprobe.serve.transfer import receive_body, send_payload

PREFIX = "/backend"
CHUNK_BYTES = 1 << 20
MAX_CHUNKS = 1024
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, s-maxage=0",
    "Pragma": "no-cache",
}


def add_routes(app: web.Application, state: ServerState) -> None:
    async def garbage(request: web.Request) -> web.StreamResponse:
        chunks = int_param(request, "ckSize", 4, low=1, high=MAX_CHUNKS)
        with state.admit(request, "librespeed", "download") as transfer:
            return await send_payload(
                request,
                state,
                transfer,
                chunks * CHUNK_BYTES,
                headers={
                    "Content-Description": "File Transfer",
                    "Content-Disposition": "attachment; filename=random.dat",
                    **_NO_CACHE,
                },
            )

    async def empty(request: web.Request) -> web.Response:
        if request.can_read_body:
            with state.admit(request, "librespeed", "upload") as transfer:
                await receive_body(request, state, transfer)
        return web.Response(status=200, headers={**_NO_CACHE, "Connection": "keep-alive"})

    async def get_ip(request: web.Request) -> web.Response:
        return web.json_response(
            {"processedString": request.remote or "", "rawIspInfo": ""}, headers=_NO_CACHE
        )

    for suffix in (".php", ""):
        app.router.add_get(f"{PREFIX}/garbage{suffix}", garbage)
        app.router.add_route("*", f"{PREFIX}/empty{suffix}", empty)
        app.router.add_get(f"{PREFIX}/getIP{suffix}", get_ip)
