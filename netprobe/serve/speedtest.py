"""speedtest-cli's legacy HTTP protocol (Ookla's "Speedtest Mini" paths), server side.

What the `speedtest-cli` package (2.1.3, speedtest.py) requests, and what this module answers:

GET  /speedtest-config.php              the configuration XML (client, thread counts, lengths)
GET  /speedtest-servers-static.php      the server list XML: this server, id 1
GET  /speedtest-servers.php             the same list (the package falls back to it)
GET  /speedtest/latency.txt             "test=test" (three timed GETs pick the best server)
GET  /speedtest/random{N}x{N}.jpg       2·N² bytes of incompressible payload (the real files
                                        are JPEGs of about that size, N from 350 to 4000)
POST /speedtest/upload.php              any body; answers "size=<bytes received>"
GET  /speedtest/upload.php              "size=0": how `--mini` detects the upload extension

The package always fetches its configuration from www.speedtest.net before anything else,
even with `--mini`, so offline it must be pointed here. Two ways, both with the unmodified
package:

1. Python, in-process (what netprobe's Ookla backend does):

       from netprobe.measure.ookla import redirected_speedtest
       st = redirected_speedtest("http://HOST:PORT")     # a speedtest.Speedtest
       st.get_servers([1]); st.get_best_server()          # or st.get_best_server(
       st.download(); st.upload()                         #   st.set_mini_server(URL))
       st.results.dict()

2. The real command line, with speedtest.net's hosts redirected for that process only:

       python -m netprobe.measure.ookla http://HOST:PORT -- --mini http://HOST:PORT/ --json
       python -m netprobe.measure.ookla http://HOST:PORT -- --server 1 --json

   Everything after `--` is speedtest-cli's own argument list, run by its own `shell()`.
   (With root, `unshare -m` plus a bind-mounted /etc/hosts naming www.speedtest.net and
   c.speedtest.net as a netprobe server on port 80 runs the `speedtest-cli` binary itself.)
"""

from __future__ import annotations

import re
from xml.sax.saxutils import quoteattr

from aiohttp import web

from netprobe.serve.state import ServerState
from netprobe.serve.transfer import receive_body, send_payload

PREFIX = "/speedtest"
SERVER_ID = 1
# The largest image the package asks for is random4000x4000.jpg; allow some headroom.
MAX_IMAGE_SIDE = 8000
_IMAGE = re.compile(r"^random(\d{1,5})x(\d{1,5})\.jpg$")

# speedtest.net's own values: 4 threads per URL, 10 s per direction, uploads in 50 chunks
# over 2 threads; ratio 1 hands out every upload size the package knows, 32 KB up to 7 MB.
_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip={ip} lat="0" lon="0" isp="netprobe lab" isprating="3.7" rating="0" ispdlavg="0" ispulavg="0" loggedin="0" country="XX"/>
<server-config threadcount="4" ignoreids="" notonmap="" forcepingid="" preferredserverid=""/>
<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>
<upload testlength="10" ratio="1" initialtest="0" mintestsize="32K" threads="2" maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>
</settings>
"""

_SERVERS = """<?xml version="1.0" encoding="UTF-8"?>
<settings>
<servers>
<server url={url} lat="0" lon="0" name="netprobe" country="Lab" cc="XX" sponsor="netprobe serve" id="{id}" host={host}/>
</servers>
</settings>
"""


def speedtest_cli_body_bytes(request: web.Request) -> int | None:
    """The body speedtest-cli really sends for the length it declares, or None for others.

    Its body is "content1=" and a 36-character alphabet repeated round(length / 36) times,
    cut at length - 9: for some sizes (65536 among them) a few bytes short of what it
    declares. Waiting for bytes that never come would stall the client until it times out.
    """
    declared = request.content_length
    if declared is None or "speedtest-cli" not in request.headers.get("User-Agent", ""):
        return None
    return min(declared, 9 + 36 * round(declared / 36))


def add_routes(app: web.Application, state: ServerState) -> None:
    async def config(request: web.Request) -> web.Response:
        return web.Response(
            text=_CONFIG.format(ip=quoteattr(request.remote or "")),
            content_type="text/xml",
            headers={"Cache-Control": "no-store"},
        )

    async def servers(request: web.Request) -> web.Response:
        url = f"{request.scheme}://{request.host}{PREFIX}/upload.php"
        return web.Response(
            text=_SERVERS.format(url=quoteattr(url), host=quoteattr(request.host), id=SERVER_ID),
            content_type="text/xml",
            headers={"Cache-Control": "no-store"},
        )

    async def latency(request: web.Request) -> web.Response:
        return web.Response(text="test=test", headers={"Cache-Control": "no-store"})

    async def image(request: web.Request) -> web.StreamResponse:
        match = _IMAGE.match(request.match_info["name"])
        if match is None or match[1] != match[2]:
            raise web.HTTPNotFound(text="only random{N}x{N}.jpg images are served\n")
        side = int(match[1])
        if not 1 <= side <= MAX_IMAGE_SIDE:
            raise web.HTTPNotFound(text=f"image side must be in [1, {MAX_IMAGE_SIDE}]\n")
        with state.admit(request, "speedtest", "download") as transfer:
            return await send_payload(
                request, state, transfer, 2 * side * side, headers={"Content-Type": "image/jpeg"}
            )

    async def upload(request: web.Request) -> web.Response:
        with state.admit(request, "speedtest", "upload") as transfer:
            received = await receive_body(
                request, state, transfer, complete_at=speedtest_cli_body_bytes(request)
            )
        response = web.Response(text=f"size={received}", headers={"Cache-Control": "no-store"})
        if received < (request.content_length or 0):
            response.force_close()  # the rest of the declared body never comes
        return response

    async def upload_probe(request: web.Request) -> web.Response:
        return web.Response(text="size=0")

    app.router.add_get("/speedtest-config.php", config)
    app.router.add_get("/speedtest-servers-static.php", servers)
    app.router.add_get("/speedtest-servers.php", servers)
    app.router.add_get(f"{PREFIX}/latency.txt", latency)
    app.router.add_post(f"{PREFIX}/upload.php", upload)
    app.router.add_get(f"{PREFIX}/upload.php", upload_probe)
    app.router.add_get(PREFIX + "/{name}", image)
