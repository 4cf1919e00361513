"""One remote_write request: headers, credentials, TLS, and what the answer means for the batch.

The remote_write specification decides what a sender does with each answer: 2xx means
stored; 5xx and 429 mean try the same batch again later (with backoff); any other status
means the receiver will never accept it (bad labels, samples too old), so the batch is
dropped and counted rather than retried forever and blocking everything behind it.

    client = RemoteWriteClient(config, session)
    verdict = await client.send(snappy_body)
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from typing import Literal

import aiohttp

from netprobe import __version__
from netprobe.errors import ConfigError
from netprobe.push.config import PushConfig, TLSConfig

_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": f"netprobe/{__version__}",
}
_BODY_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class Verdict:
    """What to do with a batch after one attempt: `sent`, `retry` later, or `drop` it."""

    action: Literal["sent", "retry", "drop"]
    reason: str = ""  # low-cardinality: server_error, throttled, transport, rejected
    detail: str = ""  # for the log: status and the start of the receiver's answer
    retry_after_seconds: float | None = None


class RemoteWriteClient:
    """Sends snappy-compressed WriteRequests to one remote_write URL."""

    def __init__(self, config: PushConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._ssl = tls_context(config.tls)

    async def send(self, body: bytes) -> Verdict:
        """POST one compressed WriteRequest and judge the answer."""
        headers = dict(_HEADERS)
        if self._config.basic_auth is not None:
            basic = self._config.basic_auth
            pair = f"{basic.username}:{basic.password.reveal()}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        elif self._config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self._config.bearer_token.reveal()}"
        try:
            async with self._session.post(
                self._config.url,
                data=body,
                headers=headers,
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout),
            ) as response:
                excerpt = (await response.text(errors="replace"))[:_BODY_EXCERPT_CHARS].strip()
                return _judge(response.status, excerpt, response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # the exception text names host and port at most, never the credentials
            return Verdict("retry", "transport", f"{type(exc).__name__}: {exc}")


def _judge(status: int, excerpt: str, retry_after: str | None) -> Verdict:
    detail = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
    if 200 <= status < 300:
        return Verdict("sent")
    if status == 429 or status >= 500:
        reason = "throttled" if status == 429 else "server_error"
        return Verdict("retry", reason, detail, _seconds(retry_after))
    return Verdict("drop", "rejected", detail)


def _seconds(retry_after: str | None) -> float | None:
    try:
        return float(retry_after) if retry_after is not None else None
    except ValueError:  # an HTTP date: rare from metrics receivers, and backoff covers it
        return None


def tls_context(tls: TLSConfig | None) -> ssl.SSLContext | bool:
    """The client TLS context for `tls:`, or True for the system's defaults."""
    if tls is None:
        return True
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files: {exc}", key="push.tls") from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
