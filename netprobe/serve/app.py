"""The reference server: one aiohttp application, one module per protocol it answers.

app = build_app(ServerLimits(max_tests=4))
web.run_app(app, host="0.0.0.0", port=8080)
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from netprobe import __version__
from netprobe.errors import cannot_listen
from netprobe.serve import cloudflare, librespeed, native, ndt7, receipt, speedtest
from netprobe.serve.receipt import ReceiptBook
from netprobe.serve.state import PROTOCOL_NAMES, ServerLimits, ServerState

# Each protocol module exposes add_routes(app, state); adding one is a line here.
PROTOCOLS = {
    "native": native.add_routes,
    "speedtest": speedtest.add_routes,
    "librespeed": librespeed.add_routes,
    "cloudflare": cloudflare.add_routes,
    "ndt7": ndt7.add_routes,
}


def build_app(
    limits: ServerLimits | None = None, receipts: ReceiptBook | None = None
) -> web.Application:
    state = ServerState(limits=limits or ServerLimits())
    app = web.Application(client_max_size=1 << 20)
    app[PROTOCOL_NAMES] = list(PROTOCOLS)
    for add_routes in PROTOCOLS.values():
        add_routes(app, state)
    if receipts is not None:
        receipt.add_routes(app, receipts)

    async def landing(request: web.Request) -> web.Response:
        return web.Response(
            text=f"netprobe server {__version__}\nprotocols: {', '.join(PROTOCOLS)}\n"
            f"native API under {native.PREFIX}/\n"
            # speedtest-cli --mini reads the upload extension from the page it is pointed at.
            f'speedtest mini under {speedtest.PREFIX}/ upload_extension: "php"\n'
        )

    app.router.add_get("/", landing)
    return app


async def start_server(
    host: str, port: int, limits: ServerLimits | None = None, receipts: ReceiptBook | None = None
) -> web.AppRunner:
    """Start the server on the running loop; returns the runner (call `cleanup()` to stop)."""
    runner = web.AppRunner(build_app(limits, receipts), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:
        await runner.cleanup()
        raise cannot_listen(host, port, exc) from None
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the server listens on (useful after binding port 0)."""
    addresses = runner.addresses
    return int(addresses[0][1])


def serve_forever(
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    receipts: ReceiptBook | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the server until interrupted (the `netprobe serve` command); `announce` gets one
    line once it listens, so nothing claims it listens on a port it could not take."""
    line = f"netprobe server {__version__} listening on http://{host}:{port}/"
    try:
        web.run_app(
            build_app(limits, receipts),
            host=host,
            port=port,
            access_log=None,
            print=(lambda _aiohttp_text: announce(line)) if announce else None,
        )
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
