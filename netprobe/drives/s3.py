"""S3-compatible drives (AWS, MinIO, Cloudflare R2, Backblaze, Aliyun OSS, Tencent COS...).

Why not boto3: botocore takes seconds and ~50 MB to import on a Raspberry Pi, and the probe needs
three signed requests (GET with Range, PUT, DELETE). AWS Signature Version 4 for a header-signed
request is short; `sign()` is tested against AWS's published example and against botocore, and
the adapter against moto's S3 server. Uploads use `UNSIGNED-PAYLOAD`, so the body streams
without being hashed first.

    url: http://minio.local:9000/bucket     (path-style: the bucket is the first path segment)
    download: {path: probe/1GiB.bin}
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

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
from netprobe.errors import ConfigError, ServerRefused

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    payload_sha256: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to add for AWS SigV4: x-amz-date, x-amz-content-sha256, Authorization.

    `url` is percent-encoded already (as sent); every header in `headers` is signed with Host.
    """
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    if parts.port and parts.port != default_port:
        host += f":{parts.port}"
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed.update({"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date})
    names = sorted(signed)
    query = sorted(
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for k, _, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    canonical = "\n".join(
        [
            method,
            parts.path or "/",  # already percent-encoded once; S3 wants no second round
            "&".join(f"{k}={v}" for k, v in query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_access_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_sha256,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}",
    }


class S3Drive:
    """An object in an S3-compatible bucket: signed GET with Range, PUT then DELETE."""

    def __init__(self, drive: DriveConfig, redactor: Redactor) -> None:
        credentials = drive.credentials
        if credentials.access_key_id is None or credentials.secret_access_key is None:
            raise ConfigError("an s3 drive needs access_key_id and secret_access_key")
        self.drive = drive
        self.base = drive.url.rstrip("/")
        self.access_key_id = credentials.access_key_id
        self.secret_access_key = redactor.add(credentials.secret_access_key.reveal())
        self.region = credentials.region
        self.redactor = redactor
        self.recorder = SocketRecorder()
        self.session: aiohttp.ClientSession | None = None

    def url(self, key: str) -> str:
        return self.base + "/" + quote(key.lstrip("/"), safe="/-_.~")

    def signed(self, method: str, url: str, payload_sha256: str = EMPTY_SHA256) -> dict[str, str]:
        headers = sign(
            method,
            url,
            {},
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            payload_sha256=payload_sha256,
            now=datetime.now(UTC),
        )
        self.redactor.add(headers["Authorization"].rpartition("Signature=")[2])
        return headers

    async def open(self) -> str:
        self.session = open_session(self.drive, self.recorder)
        return "unknown"

    async def download(self, meter: Meter) -> None:
        assert self.session is not None
        url = self.url(self.drive.download.path)
        await fetch(self.session, url, meter, credentials=self.signed("GET", url))

    async def upload(self, path: str, payload: bytes, meter: Meter) -> None:
        assert self.session is not None
        url = self.url(path)
        headers = {**self.signed("PUT", url, UNSIGNED_PAYLOAD), "Content-Length": str(len(payload))}
        meter.unsent = self.recorder.unsent_bytes
        meter.request()
        async with request(
            self.session, "PUT", url, data=counted_body(payload, meter), headers=headers
        ) as response:
            if response.status != 200:
                await check_data_response(response, url)
                raise ServerRefused(f"upload refused (HTTP {response.status})", reason="http_4xx")

    async def delete(self, path: str) -> None:
        assert self.session is not None
        url = self.url(path)
        async with request(
            self.session, "DELETE", url, headers=self.signed("DELETE", url)
        ) as response:
            if response.status not in (200, 204):
                raise ServerRefused(
                    f"could not delete the uploaded object (HTTP {response.status})",
                    reason="delete_failed",
                )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
