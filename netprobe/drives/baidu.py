"""Baidu Netdisk (百度网盘) through its xpan open API, the way a registered app sees it.

    open:     OAuth refresh (refresh tokens are single-use: the new one is kept in the service's
              state directory, `tokens.py`), then `nas?method=uinfo`; vip_type 0 is a free account, 1 and 2 are paid
    download: `file?method=list` finds the fs_id, `multimedia?method=filemetas&dlink=1` gives the
              dlink (valid 8 h), which redirects to the CDN; every hop carries
              `User-Agent: pan.baidu.com`, without which the CDN refuses
    upload:   `file?method=precreate` -> `pcs/superfile2` 4 MiB slices (the free-tier size) ->
              `file?method=create`; delete with `file?method=filemanager&opera=delete`

The access token travels in the query string, as the API wants; messages only ever show
scheme, host and path. `url` overrides the three API hosts at once (a test stand-in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from netprobe.drives.adapter import CHUNK_BYTES, Meter, Redactor
from netprobe.drives.config import DriveConfig
from netprobe.drives.http import (
    SocketRecorder,
    fetch,
    open_session,
    request,
    transport_error,
)
from netprobe.drives.tokens import TokenStore, TokenStoreError
from netprobe.errors import ConfigError, MeasurementError, ProtocolError, ServerRefused

log = logging.getLogger("netprobe.drives")

PAN_URL = "https://pan.baidu.com"
OAUTH_URL = "https://openapi.baidu.com"
UPLOAD_URL = "https://d.pcs.baidu.com"
CLIENT_USER_AGENT = "pan.baidu.com"
SLICE_BYTES = 4 * 1024 * 1024

# errno / error_code of the xpan and pcs APIs -> (reason, meaning).
ERROR_CODES: dict[int, tuple[str, str]] = {
    -6: ("auth", "Baidu refused the access token (errno -6): sign in again"),
    111: ("token_expired", "the Baidu access token has expired (errno 111)"),
    31045: ("auth", "Baidu could not verify the access token (31045)"),
    6: ("forbidden", "the app may not access this user's data (errno 6)"),
    -7: ("forbidden", "no access to this path (errno -7)"),
    31064: ("forbidden", "no permission to upload to this path (31064)"),
    -9: ("not_found", "the file does not exist on the drive (errno -9)"),
    31066: ("not_found", "the file does not exist on the drive (31066)"),
    -10: ("quota", "the drive's storage is full (errno -10)"),
    31034: ("rate_limited", "Baidu's request frequency limit was hit (31034)"),
    2: ("protocol", "Baidu rejected the request's parameters (errno 2)"),
    31299: ("protocol", "Baidu rejected an upload slice (31299)"),
    31363: ("protocol", "an upload slice is missing (31363)"),
}
_OAUTH_EXPIRED = {"expired_token", "invalid_grant", "invalid_token"}
_VIP_TYPES = {0: "free", 1: "paid", 2: "paid"}


class BaiduDrive:
    """A Baidu Netdisk account through the xpan open API."""

    def __init__(
        self, drive: DriveConfig, redactor: Redactor, state_dir: Path | None = None
    ) -> None:
        credentials = drive.credentials
        refreshable = (
            credentials.refresh_token is not None
            and credentials.client_id is not None
            and credentials.client_secret is not None
        )
        if not refreshable and credentials.access_token is None:
            raise ConfigError(
                "a baidu drive needs access_token, or refresh_token with client_id and client_secret"
            )
        self.drive = drive
        self.redactor = redactor
        self.pan_url = (drive.url or PAN_URL).rstrip("/")
        self.oauth_url = (drive.url or OAUTH_URL).rstrip("/")
        self.upload_url = (drive.url or UPLOAD_URL).rstrip("/")
        self.access_token = (
            redactor.add(credentials.access_token.reveal())
            if credentials.access_token is not None
            else ""
        )
        self.tokens = (
            TokenStore(drive.name, credentials.refresh_token, state_dir)
            if credentials.refresh_token is not None
            else None
        )
        self.recorder = SocketRecorder()
        self.session: aiohttp.ClientSession | None = None
        self.dlink: str | None = None

    # -- the API --------------------------------------------------------------------------------
    async def _call(
        self,
        base: str,
        path: str,
        query: dict[str, str],
        *,
        form: dict[str, str] | None = None,
        body: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        meter: Meter | None = None,
    ) -> dict[str, Any]:
        """One API call; its JSON answer, or the mapped error with a reason."""
        assert self.session is not None
        url = f"{base}{path}?{urlencode(query)}"
        method = "POST" if form is not None or body is not None else "GET"
        if meter is not None:
            meter.request()
        async with request(
            self.session,
            method,
            url,
            data=body if body is not None else form,
            headers={"User-Agent": CLIENT_USER_AGENT, **(headers or {})},
        ) as response:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(exc, url) from None
            status = response.status
        try:
            document = json.loads(raw)
        except ValueError:
            if raw.lstrip()[:1] == b"<":
                raise ProtocolError(
                    f"{base}{path} answered an HTML page instead of JSON", reason="html"
                ) from None
            raise ProtocolError(f"{base}{path} answered something that is not JSON") from None
        if not isinstance(document, dict):
            raise ProtocolError(f"{base}{path} answered unexpected JSON")
        error = self._error(document, f"{base}{path}")
        if error is not None:
            raise error
        if status >= 400:
            raise ServerRefused(
                f"{base}{path} refused the request (HTTP {status})",
                reason="http_5xx" if status >= 500 else "http_4xx",
            )
        return document

    @staticmethod
    def _error(document: dict[str, Any], where: str) -> MeasurementError | None:
        if isinstance(document.get("error"), str):  # OAuth
            oauth = document["error"]
            reason = "token_expired" if oauth in _OAUTH_EXPIRED else "auth"
            return ServerRefused(
                f"Baidu OAuth refused the token refresh ({oauth}): authorise the app again",
                reason=reason,
            )
        for key in ("errno", "error_code"):
            code = document.get(key)
            if isinstance(code, int) and code != 0:
                reason, meaning = ERROR_CODES.get(
                    code, ("refused", f"Baidu answered {key} {code} at {where}")
                )
                return ServerRefused(meaning, reason=reason)
        return None

    def _token(self) -> dict[str, str]:
        return {"access_token": self.access_token}

    # -- the adapter ----------------------------------------------------------------------------
    async def open(self) -> str:
        self.session = open_session(self.drive, self.recorder)
        credentials = self.drive.credentials
        if self.tokens is not None and credentials.client_secret is not None:
            try:
                await self._refresh(self.tokens)
            except TokenStoreError as exc:
                log.error("drive %s: %s", self.drive.name, exc)
                raise
        user = await self._call(
            self.pan_url, "/rest/2.0/xpan/nas", {"method": "uinfo", **self._token()}
        )
        return _VIP_TYPES.get(user.get("vip_type", -1), "unknown")

    async def _refresh(self, tokens: TokenStore) -> None:
        """A new access token; the rotated refresh token is kept before this returns."""
        credentials = self.drive.credentials
        refresh_token = self.redactor.add(tokens.current())
        with tokens.rotation() as rotation:
            granted = await self._call(
                self.oauth_url,
                "/oauth/2.0/token",
                {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": credentials.client_id or "",
                    "client_secret": self.redactor.add(
                        credentials.client_secret.reveal() if credentials.client_secret else ""
                    ),
                },
            )
            rotated = self.redactor.add(str(granted.get("refresh_token", "")))
            if rotated and rotated != refresh_token:
                rotation.commit(rotated)
        self.access_token = self.redactor.add(str(granted.get("access_token", "")))
        if not self.access_token:
            raise ProtocolError("the Baidu token refresh answered no access_token")

    async def _resolve_dlink(self) -> str:
        parent, _, name = self.drive.download.path.rstrip("/").rpartition("/")
        listing = await self._call(
            self.pan_url,
            "/rest/2.0/xpan/file",
            {"method": "list", "dir": parent or "/", "limit": "1000", **self._token()},
        )
        fs_id = next(
            (e.get("fs_id") for e in listing.get("list", []) if e.get("server_filename") == name),
            None,
        )
        if fs_id is None:
            raise ServerRefused(
                f"{self.drive.download.path} is not on the drive", reason="not_found"
            )
        metas = await self._call(
            self.pan_url,
            "/rest/2.0/xpan/multimedia",
            {"method": "filemetas", "fsids": json.dumps([fs_id]), "dlink": "1", **self._token()},
        )
        files = metas.get("list") or [{}]
        dlink = files[0].get("dlink")
        if not isinstance(dlink, str) or not dlink.startswith("http"):
            raise ProtocolError("filemetas answered no dlink", reason="protocol")
        return dlink

    async def download(self, meter: Meter) -> None:
        assert self.session is not None
        if self.dlink is None:
            self.dlink = await self._resolve_dlink()
        joiner = "&" if "?" in self.dlink else "?"
        await fetch(
            self.session,
            f"{self.dlink}{joiner}{urlencode(self._token())}",
            meter,
            headers={"User-Agent": CLIENT_USER_AGENT},
            codes=ERROR_CODES,
        )

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        slices = [payload[i : i + SLICE_BYTES] for i in range(0, len(payload), SLICE_BYTES)]
        block_list = json.dumps([hashlib.md5(s).hexdigest() for s in slices])
        common = {"path": path, "size": str(len(payload)), "isdir": "0", "rtype": "3"}
        file_api = "/rest/2.0/xpan/file"
        created = await self._call(
            self.pan_url,
            file_api,
            {"method": "precreate", **self._token()},
            form={**common, "autoinit": "1", "block_list": block_list},
        )
        if created.get("return_type") == 2:
            raise ProtocolError(
                "Baidu deduplicated the fresh upload (rapid upload)", reason="dedup"
            )
        upload_id = str(created.get("uploadid", ""))
        meter.unsent = self.recorder.unsent_bytes
        wanted = created.get("block_list") or list(range(len(slices)))
        for part in wanted:
            await self._slice(path, upload_id, int(part), slices[int(part)], meter)
        await self._call(
            self.pan_url,
            file_api,
            {"method": "create", **self._token()},
            form={**common, "uploadid": upload_id, "block_list": block_list},
        )

    async def _slice(self, path: str, upload_id: str, part: int, data: bytes, meter: Meter) -> None:
        boundary = "netprobe" + secrets.token_hex(12)
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            view = memoryview(data)
            for offset in range(0, len(data), CHUNK_BYTES):
                chunk = view[offset : offset + CHUNK_BYTES]
                meter.add(len(chunk))
                yield bytes(chunk)
            yield tail

        answer = await self._call(
            self.upload_url,
            "/rest/2.0/pcs/superfile2",
            {
                "method": "upload",
                "type": "tmpfile",
                "path": path,
                "uploadid": upload_id,
                "partseq": str(part),
                **self._token(),
            },
            body=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + len(data) + len(tail)),
            },
            meter=meter,
        )
        if answer.get("md5") != hashlib.md5(data).hexdigest():
            raise ProtocolError(f"slice {part} arrived damaged (md5 differs)", reason="protocol")

    async def delete(self, path: str) -> None:
        await self._call(
            self.pan_url,
            "/rest/2.0/xpan/file",
            {"method": "filemanager", "opera": "delete", **self._token()},
            form={"async": "0", "filelist": json.dumps([path])},
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
