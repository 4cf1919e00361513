"""The reference server: one aiohttp application, one module per protocol it answers.

runner = await start_server("0.0.0.0", 8080, ServerLimits(max_tests=4))
serve_forever("0.0.0.0", 8080, access_log="-", metrics=("127.0.0.1", 9101))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from netprobe import __version__
from netprobe.errors import cannot_listen
from netprobe.serve import cloudflare, librespeed, native, ndt7, receipt, speedtest
from netprobe.serve.guard import (
    GuardedSite,
    Summarized,
    descriptor_limit,
    loop_errors,
    request_clock,
)
from netprobe.serve.receipt import ReceiptBook
from netprobe.serve.state import (
    PROTOCOL_NAMES,
    RESERVED_DESCRIPTORS,
    ServerLimits,
    ServerState,
)

# Each protocol module exposes add_routes(app, state); adding one is a line here.
PROTOCOLS = {
    "native": native.add_routes,
    "speedtest": speedtest.add_routes,
    "librespeed": librespeed.add_routes,
    "cloudflare": cloudflare.add_routes,
    "ndt7": ndt7.add_routes,
}
STATE = web.AppKey("state", ServerState)
# aiohttp's parser limits: 32 header lines of at most 8 KiB bound what one connection can
# make the server hold before its request starts (about 256 KiB).
_MAX_HEADERS = 32
_MAX_HEADER_LINE_BYTES = 8190
# After a response, a body the handler did not read is drained this long at most.
_LINGER_SECONDS = 2.0
# Fewer than this and a single speedtest-cli or browser test may not fit.
MIN_USEFUL_CONNECTIONS = 16

log = logging.getLogger("netprobe.serve")


def build_app(state: ServerState, receipts: ReceiptBook | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 20, middlewares=[request_clock])
    app[PROTOCOL_NAMES] = list(PROTOCOLS)
    app[STATE] = state
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
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    *,
    access_log: str | None = None,
    receipts: ReceiptBook | None = None,
) -> web.AppRunner:
    """Start the server on the running loop; returns the runner (call `cleanup()` to stop).

    The connection cap is lowered to fit the process's descriptor limit, read now.
    """
    limits = (limits or ServerLimits()).fit_descriptors(descriptor_limit())
    state = ServerState(limits)
    if access_log is not None:
        from netprobe.serve.observe import AccessLog

        state.observers.append(AccessLog.open(access_log))
    runner = web.AppRunner(
        build_app(state, receipts),
        access_log=None,
        handle_signals=False,
        lingering_time=_LINGER_SECONDS,
        keepalive_timeout=limits.header_timeout_seconds,
        max_headers=_MAX_HEADERS,
        max_line_size=_MAX_HEADER_LINE_BYTES,
        max_field_size=_MAX_HEADER_LINE_BYTES,
    )
    await runner.setup()
    try:
        await GuardedSite(runner, state, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise cannot_listen(host, port, exc) from None
    return runner


def server_state(runner: web.AppRunner) -> ServerState:
    """The state of a running server: its limits, shares and counters."""
    return runner.app[STATE]


def bound_port(runner: web.AppRunner) -> int:
    """The port the server listens on (useful after binding port 0)."""
    addresses = runner.addresses
    return int(addresses[0][1])


def serve_forever(
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    announce: Callable[[str], None] | None = None,
    *,
    access_log: str | None = None,
    metrics: tuple[str, int] | None = None,
    receipts: ReceiptBook | None = None,
) -> None:
    """Run the server until interrupted or terminated (the `netprobe serve` command); `announce`
    gets one line once it listens, so nothing claims it listens on a port it could not take;
    with `receipts` it signs one for every native test."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(Summarized())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, limits, announce, access_log, metrics, receipts))


async def _serve(
    host: str,
    port: int,
    limits: ServerLimits | None,
    announce: Callable[[str], None] | None,
    access_log: str | None,
    metrics: tuple[str, int] | None,
    receipts: ReceiptBook | None,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_errors)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await start_server(host, port, limits, access_log=access_log, receipts=receipts)
    if announce is not None:
        announce(f"netprobe server {__version__} listening on http://{host}:{port}/")
    state = server_state(runner)
    if metrics is not None:
        from netprobe.serve.observe import start_metrics

        start_metrics(state, *metrics)
    if state.limits.max_connections < MIN_USEFUL_CONNECTIONS:
        log.warning(
            "the descriptor limit (%d) leaves room for %d connections only: raise it "
            "(systemd LimitNOFILE=, docker --ulimit nofile=) to at least %d",
            descriptor_limit(),
            state.limits.max_connections,
            MIN_USEFUL_CONNECTIONS + RESERVED_DESCRIPTORS,
        )
    log.info(
        "serving at most %d connections (descriptor limit %d), %d tests, %d transfers",
        state.limits.max_connections,
        descriptor_limit(),
        state.limits.max_tests,
        state.limits.max_transfers,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
