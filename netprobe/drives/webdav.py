"""WebDAV drives: rclone/wsgidav/Nextcloud servers and AList/OpenList front-ends to other drives.

In AList/OpenList `302_redirect` mode a GET answers with a redirect to the drive's CDN; the bytes
then come straight from there, and the CDN wants the drive's own client headers (Baidu:
`User-Agent: pan.baidu.com`), which `fetch` carries across while Basic credentials stay home.
"""

from __future__ import annotations

import base64

import aiohttp

from netprobe.drives.adapter import Meter, Redactor
from netprobe.drives.config import DriveConfig
from netprobe.drives.http import (
    SocketRecorder,
    check_data_response,
    counted_body,
    fetch,
    open_session,
    request,
)
from netprobe.errors import ServerRefused


class WebDavDrive:
    """A WebDAV share: GET with Range to download, PUT then DELETE to upload."""

    def __init__(self, drive: DriveConfig, redactor: Redactor) -> None:
        self.drive = drive
        self.base = drive.url.rstrip("/")
        self.recorder = SocketRecorder()
        self.credentials: dict[str, str] = {}
        credentials = drive.credentials
        if credentials.username is not None and credentials.password is not None:
            password = redactor.add(credentials.password.reveal())
            pair = f"{credentials.username}:{password}".encode()
            self.credentials["Authorization"] = "Basic " + redactor.add(
                base64.b64encode(pair).decode()
            )
        elif credentials.token is not None:
            self.credentials["Authorization"] = "Bearer " + redactor.add(credentials.token.reveal())
        self.session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    async def open(self) -> str:
        self.session = open_session(self.drive, self.recorder)
        return "unknown"

    async def download(self, meter: Meter) -> None:
        assert self.session is not None
        await fetch(
            self.session, self.url(self.drive.download.path), meter, credentials=self.credentials
        )

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        assert self.session is not None
        meter.unsent = self.recorder.unsent_bytes
        meter.request()
        url = self.url(path)
        headers = {
            **self.credentials,
            "Content-Length": str(len(payload)),
            "Content-Type": "application/octet-stream",
        }
        async with request(
            self.session, "PUT", url, data=counted_body(payload, meter), headers=headers
        ) as response:
            if response.status not in (200, 201, 204):
                await check_data_response(response, url)
                raise ServerRefused(
                    f"the drive did not store the upload (HTTP {response.status})",
                    reason="http_4xx",
                )

    async def delete(self, path: str) -> None:
        assert self.session is not None
        async with request(
            self.session, "DELETE", self.url(path), headers=self.credentials
        ) as response:
            if response.status >= 400:
                raise ServerRefused(
                    f"could not delete the uploaded file (HTTP {response.status})",
                    reason="delete_failed",
                )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
