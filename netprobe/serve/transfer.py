"""Sending and receiving payload for every protocol the server speaks, within the limits.

A client that vanishes mid-transfer ends the transfer quietly; a transfer that runs past the
time cap is cut. Neither ever reaches the event loop as an unhandled error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from netprobe.serve.state import ServerState

_WRITE_CHUNK_BYTES = 1 << 20
_PACED_CHUNK_BYTES = 64 * 1024
# A vanished client: a reset, or aiohttp refusing to write to a closing transport.
_GONE = (ConnectionError, RuntimeError)


async def send_payload(
    request: web.Request,
    state: ServerState,
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
    sent = 0
    try:
        await response.prepare(request)
        async with asyncio.timeout(state.limits.max_request_seconds):
            while sent < n_bytes:
                offset = sent % size
                chunk = min(n_bytes - sent, write_chunk, size - offset)
                if pacer is not None:
                    await pacer.take(chunk)
                await response.write(view[offset : offset + chunk])
                sent += chunk
                if on_chunk is not None:
                    on_chunk(sent, time.monotonic())
        await response.write_eof()
    except (TimeoutError, *_GONE):
        _drop(request)  # past the time cap, or the client is gone: end the connection quietly
    return response


async def receive_body(
    request: web.Request,
    state: ServerState,
    on_chunk: Callable[[int, float], None] | None = None,
) -> int:
    """Read and discard the request body; report each chunk as (total bytes, monotonic time).

    A client that vanishes simply ends the body: what arrived is returned.
    """
    received = 0
    cap = state.limits.max_bytes_per_request
    try:
        async with asyncio.timeout(state.limits.max_request_seconds):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                received += len(chunk)
                if state.upload_pacer is not None:
                    await state.upload_pacer.take(len(chunk))
                if on_chunk is not None:
                    on_chunk(received, time.monotonic())
                if received > cap:
                    raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=received)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="upload ran past the server's time limit\n") from None
    except ConnectionError:
        _drop(request)
    return received


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
