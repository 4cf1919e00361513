"""Sending and receiving payload for every protocol the server speaks, within the limits.

A client that vanishes mid-transfer ends the transfer quietly; a transfer that runs past the
time cap, or a body that stops arriving for the idle timeout, is cut, even while the server
is blocked writing to a client that does not read. None of these ever reaches the event
loop as an unhandled error.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from netprobe.serve.state import ServerState, Transfer

# A paced upload is read slowly. Left to autotuning, its receive buffer grew to ~780 kB and
# the senders sat in zero-window probes backing off to about a second (`ss -o`: persist
# timers): streams stalled in turn and a paced 20 Mbit/s upload read 11.5-20.3 Mbit/s. With a
# fixed buffer the window reopens as the handler reads: 19.95-20.06 Mbit/s.
_PACED_RECEIVE_BUFFER_BYTES = 256 * 1024
_WRITE_CHUNK_BYTES = 256 * 1024
_PACED_CHUNK_BYTES = 64 * 1024
# A vanished client: a reset, or aiohttp refusing to write to a closing transport.
GONE = (ConnectionError, RuntimeError)


async def send_payload(
    request: web.Request,
    state: ServerState,
    transfer: Transfer,
    n_bytes: int,
    headers: Mapping[str, str] | None = None,
    on_chunk: Callable[[int, float], None] | None = None,
) -> web.StreamResponse:
    """Answer with `n_bytes` of incompressible payload; report each chunk as (total bytes
    sent, monotonic time)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Cache-Control": "no-store",
            **(headers or {}),
        }
    )
    response.content_length = n_bytes
    view = memoryview(state.payload)
    size = len(view)
    pacer = state.download_pacer
    write_chunk = _PACED_CHUNK_BYTES if pacer else _WRITE_CHUNK_BYTES
    try:
        async with asyncio.timeout(state.limits.max_request_seconds):
            await response.prepare(request)
            while transfer.n_bytes < n_bytes:
                offset = transfer.n_bytes % size
                chunk = min(n_bytes - transfer.n_bytes, write_chunk, size - offset)
                if pacer is not None:
                    await pacer.take(chunk)
                await response.write(view[offset : offset + chunk])
                transfer.n_bytes += chunk
                # A write to a fast socket never waits: give the other clients their turn.
                await asyncio.sleep(0)
                if on_chunk is not None:
                    on_chunk(transfer.n_bytes, time.monotonic())
            await response.write_eof()
    except TimeoutError:
        transfer.outcome = "timeout"
        drop(request)  # past the time cap: end the connection, whatever its buffers hold
    except GONE:
        transfer.outcome = "gone"
        drop(request)
    return response


async def receive_body(
    request: web.Request,
    state: ServerState,
    transfer: Transfer,
    on_chunk: Callable[[int, float], None] | None = None,
    complete_at: int | None = None,
) -> int:
    """Read and discard the request body; report each chunk as (total bytes, monotonic time).

    The body ends at its end, at `complete_at` bytes when given (a client known to send less
    than it declared), or when the client vanishes: what arrived is returned.
    """
    cap = state.limits.max_bytes_per_request
    idle_seconds = state.limits.idle_body_timeout_seconds
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if state.upload_pacer is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _PACED_RECEIVE_BUFFER_BYTES)
    try:
        async with asyncio.timeout(state.limits.max_request_seconds):
            while complete_at is None or transfer.n_bytes < complete_at:
                try:
                    async with asyncio.timeout(idle_seconds):
                        chunk = await request.content.readany()
                except TimeoutError:
                    transfer.outcome = "idle"
                    raise web.HTTPRequestTimeout(
                        text=f"upload sent nothing for {idle_seconds:g} s\n"
                    ) from None
                if not chunk:
                    break
                transfer.n_bytes += len(chunk)
                if state.upload_pacer is not None:
                    await state.upload_pacer.take(len(chunk))
                if on_chunk is not None:
                    on_chunk(transfer.n_bytes, time.monotonic())
                if transfer.n_bytes > cap:
                    raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=transfer.n_bytes)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="upload ran past the server's time limit\n") from None
    except ConnectionError:
        transfer.outcome = "gone"
        drop(request)
    return transfer.n_bytes


def drop(request: web.Request) -> None:
    """End the request's connection now, discarding whatever it still buffers."""
    if request.transport is not None:
        request.transport.abort()
