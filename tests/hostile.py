"""Servers that misbehave, for the CLI's bad-input tests: `python hostile.py MODE PORT`.

silent  accepts connections and never answers
reset   answers the netprobe hello, then resets the connection mid-download
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys

HELLO = json.dumps({"service": "netprobe", "version": "hostile"}).encode()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/hello" in head or b"/ping" in head:
            body = HELLO if b"/hello" in head else b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            continue
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n" + b"\0" * 200_000)
        await writer.drain()
        await asyncio.sleep(0.5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return


async def main(mode: str, port: int) -> None:
    handler = {"silent": silent, "reset": reset}[mode]
    server = await asyncio.start_server(handler, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
