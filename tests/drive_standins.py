"""Local stand-ins for cloud drives: the throttle shapes of docs/method.md §5 and Baidu's xpan API.

One aiohttp app serves every shape under its own path, paced exactly, so the probe's figures
can be checked against known caps:

    /capped/F          per-connection cap of `rate` bytes/s
    /burst/F           `burst_rate` for `burst_seconds` (or for `burst_bytes` when set), then
                       `rate` (Aliyun third-party clients); the file is `file_bytes` long
    /single/F          at most `max_connections` at once, more get HTTP 403 (Aliyun)
    /quota/F           `quota_bytes` in all, then 403 with {"code": 5113} (123pan's daily quota)
    /html/F            a login page with HTTP 200 instead of the file
    /loop/a            a redirect loop
    /expired/F         HTTP 401
    /alist/F           AList/OpenList 302_redirect: Basic auth here, then a redirect to the CDN
    /cdn/F             the CDN (reached as "localhost", another origin): wants
                       `User-Agent: pan.baidu.com`, refuses any Authorization
    /oauth/2.0/token, /rest/2.0/xpan/..., /rest/2.0/pcs/superfile2, /dlink/F: Baidu's API shapes

The Baidu shapes follow the open platform documentation (pan.baidu.com/union/doc): errno in
every JSON answer, vip_type in uinfo, dlinks that need the access token and the client's
User-Agent, precreate/superfile2/create for uploads. Run standalone (e.g. inside a lab
namespace) with `python tests/drive_standins.py HOST PORT RATE`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

FILE_BYTES = 256 * 1024 * 1024
_BLOCK = os.urandom(1 << 20)
_CHUNK = 16 * 1024
_RING = _BLOCK + _BLOCK[:_CHUNK]  # any chunk is one slice, however the offset falls
ACCESS_TOKEN = "AT.secret-baidu-access-7f3e9d"
REFRESH_TOKEN = "RT.secret-baidu-refresh-1a2b3c"
ROTATED_REFRESH_TOKEN = "RT.secret-baidu-refresh-rotated-4d5e6f"
CLIENT_SECRET = "CS.secret-client-9z8y7x"
BASIC_USER, BASIC_PASSWORD = "probe", "secret-dav-password-5k4j"


@dataclass
class Shapes:
    """The stand-in's knobs and its memory."""

    rate: float = 2_000_000.0
    burst_rate: float = 8_000_000.0
    burst_seconds: float = 1.5
    burst_bytes: int | None = None
    file_bytes: int = FILE_BYTES
    max_connections: int = 1
    quota_bytes: int = 3_000_000
    vip_type: int = 0
    refresh_expired: bool = False
    # Baidu's refresh tokens are single-use: each refresh spends one and grants the next.
    refresh_tokens: set[str] = field(default_factory=lambda: {REFRESH_TOKEN})
    refreshes: int = 0
    active: int = 0
    quota_used: int = 0
    files: dict[str, int] = field(default_factory=lambda: {"/netprobe/big.bin": 777})
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)


SHAPES = web.AppKey("shapes", Shapes)


async def _paced(
    request: web.Request,
    rate: float,
    *,
    burst_rate: float = 0.0,
    burst_seconds: float = 0.0,
    burst_bytes: float | None = None,
    size: int = FILE_BYTES,
) -> web.StreamResponse:
    """Send `size` bytes (from the Range start), never faster than the schedule allows: the
    first `burst_bytes` (default `burst_rate` × `burst_seconds`) at `burst_rate`, then `rate`.
    The schedule is in bytes and time, so a stalled event loop is caught up, not lost."""
    start = 0
    header = request.headers.get("Range", "")
    if header.startswith("bytes="):
        start = int(header[6:].split("-")[0] or 0)
    length = max(0, size - start)
    response = web.StreamResponse(status=206 if header else 200)
    response.content_type = "application/octet-stream"
    response.content_length = length
    if header:
        response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    began = loop.time()
    if burst_bytes is None:
        burst_bytes = burst_rate * burst_seconds
    burst_seconds = burst_bytes / burst_rate if burst_rate else 0.0
    sent = 0
    try:
        while sent < length:
            n = min(_CHUNK, length - sent)
            offset = (start + sent) % len(_BLOCK)
            chunk = _RING[offset : offset + n]
            await response.write(chunk)
            sent += n
            due = (
                sent / burst_rate
                if sent <= burst_bytes
                else burst_seconds + (sent - burst_bytes) / rate
            )
            delay = began + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
    except (ConnectionError, asyncio.CancelledError):
        pass
    return response


async def capped(request: web.Request) -> web.StreamResponse:
    return await _paced(request, request.app[SHAPES].rate)


async def burst(request: web.Request) -> web.StreamResponse:
    shapes = request.app[SHAPES]
    return await _paced(
        request,
        shapes.rate,
        burst_rate=shapes.burst_rate,
        burst_seconds=shapes.burst_seconds,
        burst_bytes=shapes.burst_bytes,
        size=shapes.file_bytes,
    )


async def single(request: web.Request) -> web.StreamResponse:
    shapes = request.app[SHAPES]
    if shapes.active >= shapes.max_connections:
        return web.json_response(
            {"code": "TooManyConnections", "message": "too many concurrent downloads"}, status=403
        )
    shapes.active += 1
    try:
        return await _paced(request, shapes.rate)
    finally:
        shapes.active -= 1


async def quota(request: web.Request) -> web.StreamResponse:
    shapes = request.app[SHAPES]
    remaining = shapes.quota_bytes - shapes.quota_used
    if remaining <= 0:
        return web.json_response({"code": 5113, "message": "今日下载流量已用完"}, status=403)
    shapes.quota_used = shapes.quota_bytes  # this response takes what is left
    return await _paced(request, shapes.rate, size=remaining)


async def html(request: web.Request) -> web.Response:
    return web.Response(
        text="<!DOCTYPE html><html><body><form>请登录 / please sign in</form></body></html>",
        content_type="text/html",
    )


async def loop(request: web.Request) -> web.Response:
    other = "b" if request.match_info["hop"] == "a" else "a"
    raise web.HTTPFound(f"/loop/{other}")


async def expired(request: web.Request) -> web.Response:
    return web.json_response({"error": "token expired"}, status=401)


def _basic_ok(request: web.Request) -> bool:
    import base64

    pair = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    return request.headers.get("Authorization") == f"Basic {pair}"


async def alist(request: web.Request) -> web.Response:
    if not _basic_ok(request):
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="alist"'})
    # The CDN is another origin: "localhost" instead of the address the probe used.
    port = request.url.port
    raise web.HTTPFound(
        f"http://localhost:{port}/cdn/{request.match_info['name']}?sign=cdn-signature-abc&expires=600"
    )


async def cdn(request: web.Request) -> web.StreamResponse:
    shapes = request.app[SHAPES]
    shapes.seen_headers.append(dict(request.headers))
    if "Authorization" in request.headers:
        return web.Response(status=400, text="credentials leaked to the CDN")
    if request.headers.get("User-Agent") != "pan.baidu.com":
        return web.json_response(
            {"error_code": 31326, "error_msg": "user is not authorized"}, status=403
        )
    return await _paced(request, shapes.rate)


# -- Baidu xpan -------------------------------------------------------------------------------
def _baidu_token_ok(request: web.Request) -> bool:
    return request.query.get("access_token") == ACCESS_TOKEN


def _errno(errno: int, **extra: Any) -> web.Response:
    return web.json_response({"errno": errno, "request_id": 1234567890, **extra})


async def oauth_token(request: web.Request) -> web.Response:
    shapes = request.app[SHAPES]
    query = request.query
    if shapes.refresh_expired or query.get("refresh_token") not in shapes.refresh_tokens:
        return web.json_response(
            {"error": "expired_token", "error_description": "refresh token has been used"},
            status=400,
        )
    if query.get("client_secret") != CLIENT_SECRET or query.get("grant_type") != "refresh_token":
        return web.json_response({"error": "invalid_client"}, status=401)
    shapes.refreshes += 1
    rotated = f"{ROTATED_REFRESH_TOKEN}-{shapes.refreshes}"
    shapes.refresh_tokens = {rotated}
    return web.json_response(
        {
            "expires_in": 2592000,
            "refresh_token": rotated,
            "access_token": ACCESS_TOKEN,
            "session_secret": "",
            "session_key": "",
            "scope": "basic netdisk",
        }
    )


async def nas(request: web.Request) -> web.Response:
    if not _baidu_token_ok(request):
        return _errno(-6)
    return _errno(
        0,
        errmsg="succ",
        avatar_url="https://dss0.bdstatic.com/x.jpg",
        baidu_name="probe",
        netdisk_name="probe",
        uk=2_401_234_567,
        vip_type=request.app[SHAPES].vip_type,
    )


async def xpan_file(request: web.Request) -> web.Response:
    shapes = request.app[SHAPES]
    if not _baidu_token_ok(request):
        return _errno(-6)
    method = request.query.get("method")
    if method == "list":
        folder = request.query.get("dir", "/").rstrip("/")
        entries = [
            {
                "server_filename": path.rpartition("/")[2],
                "fs_id": fs_id,
                "isdir": 0,
                "size": FILE_BYTES,
            }
            for path, fs_id in shapes.files.items()
            if path.rpartition("/")[0] == folder
        ]
        return _errno(0, list=entries, guid_info="", guid=0)
    form = await request.post()
    if method == "precreate":
        blocks = json.loads(str(form["block_list"]))
        upload_id = "N1-" + hashlib.md5(str(form["path"]).encode()).hexdigest()
        shapes.uploads[upload_id] = {"path": form["path"], "blocks": blocks, "got": {}}
        return _errno(
            0,
            path=form["path"],
            uploadid=upload_id,
            return_type=1,
            block_list=list(range(len(blocks))),
        )
    if method == "create":
        upload = shapes.uploads.get(str(form["uploadid"]))
        if upload is None or len(upload["got"]) != len(upload["blocks"]):
            return _errno(31363)
        if [upload["got"][i] for i in range(len(upload["blocks"]))] != upload["blocks"]:
            return _errno(31299)
        shapes.stored[str(form["path"])] = int(str(form["size"]))
        return _errno(0, fs_id=888, path=form["path"], size=int(str(form["size"])), isdir=0)
    if method == "filemanager" and request.query.get("opera") == "delete":
        for path in json.loads(str(form["filelist"])):
            shapes.stored.pop(path, None)
            shapes.deleted.append(path)
        return _errno(0, info=[], taskid=0)
    return _errno(2)


async def multimedia(request: web.Request) -> web.Response:
    shapes = request.app[SHAPES]
    if not _baidu_token_ok(request):
        return _errno(-6)
    fs_ids = json.loads(request.query.get("fsids", "[]"))
    by_id = {fs_id: path for path, fs_id in shapes.files.items()}
    listed = [
        {
            "fs_id": fs_id,
            "path": by_id[fs_id],
            "filename": by_id[fs_id].rpartition("/")[2],
            "size": FILE_BYTES,
            "category": 6,
            "dlink": f"http://{request.host}/dlink/{fs_id}?fid={fs_id}&dstime=1&sign=DCb740ccc5511e5e8fedcff06b081203-abc&vuk=1&expires=8h",
        }
        for fs_id in fs_ids
        if fs_id in by_id
    ]
    if not listed:
        return _errno(-9)
    return web.json_response(
        {"errmsg": "succ", "errno": 0, "list": listed, "names": {}, "request_id": "1"}
    )


async def dlink(request: web.Request) -> web.Response:
    if request.headers.get("User-Agent") != "pan.baidu.com":
        return web.json_response(
            {"error_code": 31326, "error_msg": "user is not authorized"}, status=403
        )
    if not _baidu_token_ok(request):
        return web.json_response(
            {"error_code": 31045, "error_msg": "access_token verify failed"}, status=403
        )
    raise web.HTTPFound(
        f"http://localhost:{request.url.port}/cdn/{request.match_info['fs_id']}.bin?sign=cdn-xyz"
    )


async def superfile2(request: web.Request) -> web.Response:
    shapes = request.app[SHAPES]
    if not _baidu_token_ok(request):
        return web.json_response({"error_code": 31045, "error_msg": "access_token verify failed"})
    upload = shapes.uploads.get(request.query.get("uploadid", ""))
    if upload is None:
        return web.json_response({"error_code": 31363, "error_msg": "no such upload"})
    reader = await request.multipart()
    digest = hashlib.md5()
    part = await reader.next()
    assert isinstance(part, BodyPartReader)
    # Received at the free tier's pace so the upload figure can be checked against a cap.
    loop = asyncio.get_running_loop()
    began, received = loop.time(), 0
    while chunk := await part.read_chunk(_CHUNK):
        digest.update(chunk)
        received += len(chunk)
        delay = began + received / shapes.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    upload["got"][int(request.query["partseq"])] = digest.hexdigest()
    return web.json_response(
        {"md5": digest.hexdigest(), "request_id": 42, "partseq": request.query["partseq"]}
    )


def build_app(shapes: Shapes | None = None) -> web.Application:
    app = web.Application()
    app[SHAPES] = shapes or Shapes()
    app.router.add_get("/capped/{name}", capped)
    app.router.add_get("/burst/{name}", burst)
    app.router.add_get("/single/{name}", single)
    app.router.add_get("/quota/{name}", quota)
    app.router.add_get("/html/{name}", html)
    app.router.add_get("/loop/{hop}", loop)
    app.router.add_get("/expired/{name}", expired)
    app.router.add_get("/alist/{name}", alist)
    app.router.add_get("/cdn/{name}", cdn)
    app.router.add_get("/oauth/2.0/token", oauth_token)
    app.router.add_get("/rest/2.0/xpan/nas", nas)
    app.router.add_route("*", "/rest/2.0/xpan/file", xpan_file)
    app.router.add_get("/rest/2.0/xpan/multimedia", multimedia)
    app.router.add_get("/dlink/{fs_id}", dlink)
    app.router.add_post("/rest/2.0/pcs/superfile2", superfile2)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Cloud-drive stand-ins (see the docstring).")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("rate", type=float, help="the steady rate, bytes/s")
    parser.add_argument("--burst-rate", type=float, default=0.0, help="bytes/s (0: no burst)")
    parser.add_argument("--burst-seconds", type=float, default=0.0)
    parser.add_argument("--burst-bytes", type=int, default=None, help="instead of seconds")
    parser.add_argument("--file-bytes", type=int, default=FILE_BYTES)
    args = parser.parse_args()
    shapes = Shapes(
        rate=args.rate,
        burst_rate=args.burst_rate or args.rate,
        burst_seconds=args.burst_seconds,
        burst_bytes=args.burst_bytes,
        file_bytes=args.file_bytes,
    )
    web.run_app(build_app(shapes), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
