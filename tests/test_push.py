"""The remote_write client's parts: snappy, the WriteRequest encoding, the outbox, the retry rules,
credentials and TLS — against an independent snappy decoder (cramjam) and a real aiohttp
receiver on loopback that answers what each test scripts."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import itertools
import logging
import math
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from netprobe.configschema import build
from netprobe.errors import ConfigError
from netprobe.push.clockjump import JumpGuard
from netprobe.push.config import PushConfig
from netprobe.push.outbox import Outbox, canonical_labels
from netprobe.push.pusher import Pusher, scrape
from netprobe.push.snappy import compress
from netprobe.push.writerequest import encode_write_request

# -- an independent reading of the wire format ----------------------------------------------


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def read_fields(data: bytes) -> list[tuple[int, bytes | int]]:
    fields: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
            fields.append((number, value))
        elif wire_type == 1:
            fields.append((number, data[pos : pos + 8]))
            pos += 8
        else:
            assert wire_type == 2, wire_type
            length, pos = read_varint(data, pos)
            fields.append((number, data[pos : pos + length]))
            pos += length
    return fields


def decode_write_request(
    body: bytes,
) -> list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]:
    series = []
    for _, ts in read_fields(body):
        assert isinstance(ts, bytes)
        labels, samples = [], []
        for number, part in read_fields(ts):
            assert isinstance(part, bytes)
            inner = dict(read_fields(part))
            if number == 1:
                labels.append((bytes(inner[1]).decode(), bytes(inner[2]).decode()))
            else:
                value = struct.unpack("<d", inner[1])[0]  # type: ignore[arg-type]
                samples.append((int(inner[2]), value))
        series.append((labels, samples))
    return series


# -- snappy and protobuf ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000) | st.text(alphabet="ab_c=", max_size=3000).map(str.encode))
def test_snappy_blocks_decode_with_an_independent_decoder(data: bytes) -> None:
    assert bytes(cramjam.snappy.decompress_raw(compress(data))) == data


def test_snappy_handles_blocks_beyond_64k_and_long_literals() -> None:
    data = bytes(range(256)) * 300 + b"x" * 100_000 + bytes(range(255, -1, -1)) * 3
    assert bytes(cramjam.snappy.decompress_raw(compress(data))) == data


def test_snappy_shrinks_a_write_request_like_the_reference_encoder() -> None:
    names = [("__name__", "netprobe_line_rate_bytes_per_second"), ("probe_id", "0123456789abcdef")]
    body = encode_write_request(
        [([*names, ("direction", str(i))], [(1_700_000_000_000 + i, float(i))]) for i in range(500)]
    )
    ours = len(compress(body))
    reference = len(bytes(cramjam.snappy.compress_raw(body)))
    assert ours < len(body) / 3
    assert ours < reference * 1.2


def test_write_request_sorts_labels_and_keeps_sample_order() -> None:
    body = encode_write_request(
        [
            ([("site", "b"), ("__name__", "up"), ("job", "netprobe")], [(1000, 1.0), (2000, -0.5)]),
            ([("__name__", "nan_gauge")], [(-5, math.inf)]),
        ]
    )
    decoded = decode_write_request(body)
    assert decoded[0] == (
        [("__name__", "up"), ("job", "netprobe"), ("site", "b")],
        [(1000, 1.0), (2000, -0.5)],
    )
    assert decoded[1][1][0][1] == math.inf
    assert decoded[1][1][0][0] == (-5) & 0xFFFFFFFFFFFFFFFF  # int64 as two's complement varint


# -- configuration ------------------------------------------------------------------------


def test_push_config_reads_units_auth_and_tls() -> None:
    config = build(
        PushConfig,
        {
            "url": "https://mimir.example.net/api/v1/push",
            "interval": "30s",
            "external_labels": {"site": "berlin-3"},
            "basic_auth": {"username": "probe", "password": {"env": "PUSH_PASSWORD"}},
            "tls": {"ca_file": "/etc/netprobe/ca.pem"},
            "max_outbox_age": "2d",
        },
        file="agent.yml",
        key="push",
    )
    assert config.interval == 30 and config.max_outbox_age == 172800
    assert config.basic_auth is not None and config.basic_auth.password.env == "PUSH_PASSWORD"


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"url": "mimir:9009"}, "http:// or https://"),
        (
            {"url": "http://x", "bearer_token": {"file": "a", "env": "B"}},
            "exactly one of env or file",
        ),
        (
            {
                "url": "http://x",
                "bearer_token": {"env": "T"},
                "basic_auth": {"username": "u", "password": {"env": "P"}},
            },
            "not both",
        ),
        ({"url": "http://x", "tls": {"cert_file": "c.pem"}}, "cert_file and key_file"),
        ({"url": "http://x", "external_labels": {"__name__": "x"}}, "reserved"),
        ({"url": "http://x", "password": "hunter2"}, "unknown key"),
    ],
)
def test_bad_push_sections_are_refused_with_the_reason(
    section: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        build(PushConfig, section, file="agent.yml", key="push")


# -- the outbox ---------------------------------------------------------------------------


def labels(name: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return canonical_labels([("__name__", name), *extra.items()])


def test_outbox_keeps_samples_across_reopen_in_time_order(tmp_path: Path) -> None:
    path = str(tmp_path / "store.sqlite")
    outbox = Outbox.open(path)
    for second in range(3):
        outbox.enqueue(
            second * 1000,
            [(labels("a"), second), (labels("b", d="x"), math.nan)],
            max_age_ms=10**9,
            max_samples=100,
        )
    outbox.close()
    reopened = Outbox.open(path)
    assert reopened.queued_samples == 6
    batch = reopened.oldest(max_samples=4)
    assert batch is not None and batch.sample_count == 4  # whole scrapes only
    series = dict(batch.series())
    assert series[labels("a")] == [(0, 0.0), (1000, 1.0)]
    assert all(math.isnan(value) for _, value in series[labels("b", d="x")])
    reopened.remove(batch)
    rest = reopened.oldest(max_samples=4)
    assert rest is not None and dict(rest.series())[labels("a")] == [(2000, 2.0)]
    reopened.remove(rest)
    assert reopened.oldest(max_samples=4) is None and reopened.queued_samples == 0


def test_outbox_drops_expired_overflowing_and_backwards_scrapes(tmp_path: Path) -> None:
    outbox = Outbox.open(str(tmp_path / "store.sqlite"))
    one = [(labels("a"), 1.0)]
    for second in range(5):
        assert outbox.enqueue(
            second * 1000, one, max_age_ms=10_000, max_samples=3
        ).samples_by_reason in (
            {},
            {"overflow": 1},
        )
    assert outbox.queued_samples == 3
    assert outbox.enqueue(4000, one, max_age_ms=10_000, max_samples=3).samples_by_reason == {
        "clock_backwards": 1
    }
    assert outbox.enqueue(13_500, one, max_age_ms=10_000, max_samples=3).samples_by_reason == {
        "expired": 2
    }
    batch = outbox.oldest(10)
    assert batch is not None and [t for t, _ in batch.series()[0][1]] == [4000, 13_500]


def test_scrape_adds_external_labels_without_overriding_the_series_own(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Gauge("netprobe_probe_info", "Who.", ["probe_id"], registry=registry).labels("from-config").set(
        1
    )
    samples = scrape(registry, {"probe_id": "from-fleet", "site": "s1"})
    assert samples == [(labels("netprobe_probe_info", probe_id="from-config", site="s1"), 1.0)]


# -- the pusher against a scripted receiver -------------------------------------------------


@dataclass
class Receiver:
    """An aiohttp remote_write endpoint answering the scripted statuses, then 204."""

    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[web.Request] = field(default_factory=list)
    bodies: list[list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]] = field(
        default_factory=list
    )
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = bytes(cramjam.snappy.decompress_raw(await request.read()))
        self.requests.append(request)
        answer = self.statuses.pop(0) if self.statuses else 204
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        if status == 204:
            self.bodies.append(decode_write_request(body))
        return web.Response(status=status, headers=headers, text="" if status == 204 else "nope")

    def values(self, name: str) -> list[float]:
        return [
            value
            for request in self.bodies
            for series_labels, samples in request
            if ("__name__", name) in series_labels
            for _, value in samples
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    scripted = Receiver()
    app = web.Application()
    app.router.add_post("/api/v1/write", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    scripted.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/write"
    yield scripted
    await runner.cleanup()


async def push_until(pusher: Pusher, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    task = asyncio.ensure_future(pusher.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def fast(url: str) -> PushConfig:
    return PushConfig(url=url, interval=0.05, min_backoff=0.01, max_backoff=0.05, timeout=5.0)


class ScrapeCounter:
    """A gauge that reads 1, 2, 3... on successive scrapes, so lost or reordered samples show."""

    def __init__(self) -> None:
        self.count = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.count += 1
        yield GaugeMetricFamily("netprobe_test_scrapes", "Scrapes so far.", value=self.count)


def counting_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ScrapeCounter())
    return registry


async def test_retries_5xx_and_429_then_delivers_in_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    registry = counting_registry()
    receiver.statuses = [500, 503, (429, {"Retry-After": "0.01"}), 502]
    pusher = Pusher(
        fast(receiver.url), registry, store_path=str(tmp_path / "s.sqlite"), probe_id="p1"
    )
    await push_until(pusher, lambda: len(receiver.values("netprobe_test_scrapes")) >= 8)
    values = receiver.values("netprobe_test_scrapes")
    assert values == [float(i) for i in range(1, len(values) + 1)]
    failures = {
        s.labels["reason"]: s.value
        for f in pusher.collect()
        for s in f.samples
        if f.name == "netprobe_push_failures"
    }
    assert failures == {"server_error": 3, "throttled": 1}


async def test_other_4xx_drops_the_batch_counts_it_and_moves_on(
    receiver: Receiver, tmp_path: Path
) -> None:
    registry = counting_registry()
    receiver.statuses = [400]
    pusher = Pusher(
        fast(receiver.url), registry, store_path=str(tmp_path / "s.sqlite"), probe_id="p1"
    )
    await push_until(pusher, lambda: len(receiver.values("netprobe_test_scrapes")) >= 3)
    metrics = {
        (f.name, tuple(s.labels.items())): s.value for f in pusher.collect() for s in f.samples
    }
    dropped = metrics[("netprobe_push_dropped_samples", (("reason", "rejected"),))]
    assert dropped >= 1
    assert metrics[("netprobe_push_failures", (("reason", "rejected"),))] == 1
    assert len(receiver.requests) == len(receiver.bodies) + 1  # the refused batch was not retried


async def test_credentials_come_from_file_or_env_and_never_reach_the_log(
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)  # a token file others can read is refused
    registry = counting_registry()
    config = build(
        PushConfig, {"url": receiver.url, "bearer_token": {"file": str(token)}}, file="t"
    )
    config.interval, config.min_backoff, config.max_backoff = 0.05, 0.01, 0.05
    receiver.statuses = [503]
    await push_until(
        Pusher(config, registry, store_path=str(tmp_path / "a.sqlite"), probe_id="p"),
        lambda: len(receiver.bodies) >= 1,
    )
    assert receiver.requests[-1].headers["Authorization"] == "Bearer s3cret-token"
    headers = receiver.requests[-1].headers
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"

    monkeypatch.setenv("PUSH_PASSWORD", "pa55word")
    config = build(
        PushConfig,
        {
            "url": receiver.url,
            "basic_auth": {"username": "probe", "password": {"env": "PUSH_PASSWORD"}},
        },
        file="t",
    )
    config.interval = 0.05
    # The first pusher may have delivered more than one body before it stopped: wait for one
    # more than it left, so the request read below is the second pusher's.
    delivered = len(receiver.bodies)
    await push_until(
        Pusher(config, registry, store_path=str(tmp_path / "b.sqlite"), probe_id="p"),
        lambda: len(receiver.bodies) > delivered,
    )
    assert receiver.requests[-1].headers["Authorization"] == "Basic cHJvYmU6cGE1NXdvcmQ="
    assert "s3cret" not in caplog.text and "pa55word" not in caplog.text


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_receiver_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    scripted = Receiver()
    app = web.Application()
    app.router.add_post("/api/v1/write", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/api/v1/write"
    registry = counting_registry()
    try:
        untrusted = Pusher(fast(url), registry, store_path=str(tmp_path / "u.sqlite"), probe_id="p")
        await push_until(untrusted, lambda: untrusted_failures(untrusted) >= 1)
        assert scripted.bodies == []
        config = build(PushConfig, {"url": url, "tls": {"ca_file": str(cert_file)}}, file="t")
        config.interval = 0.05
        trusted = Pusher(config, registry, store_path=str(tmp_path / "t.sqlite"), probe_id="p")
        await push_until(trusted, lambda: len(scripted.bodies) >= 1)
    finally:
        await runner.cleanup()


def untrusted_failures(pusher: Pusher) -> float:
    return sum(
        s.value
        for f in pusher.collect()
        for s in f.samples
        if s.labels.get("reason") == "transport"
    )


# -- clock jumps ------------------------------------------------------------------------------

FIVE_YEARS_SECONDS = 5 * 365 * 86400.0


class ScriptedClock:
    """A wall clock `offset(n)` seconds off the monotonic clock while scrape n is taken."""

    def __init__(self, counter: ScrapeCounter, offset: Callable[[int], float]) -> None:
        self._counter = counter
        self._offset = offset

    def __call__(self) -> float:
        return time.time() + self._offset(self._counter.count + 1)


def test_jump_guard_drops_a_glitch_and_follows_a_confirmed_jump() -> None:
    guard: JumpGuard[int] = JumpGuard(tolerance_seconds=10.0, confirmations=3)
    assert guard.check(0.0, 1, behind_queue=False).release == [1]
    assert guard.check(1e8, 2, behind_queue=False).release == []  # a glitch ahead...
    verdict = guard.check(0.5, 3, behind_queue=False)  # ...refuted by the next scrape
    assert (verdict.release, verdict.dropped) == ([3], [2])
    for held in (4, 5):  # a jump back, confirmed by the third scrape on the new clock
        assert guard.check(-1e8, held, behind_queue=True).release == []
    verdict = guard.check(-1e8 + 2, 6, behind_queue=True)
    assert (verdict.release, verdict.dropped, verdict.confirmed) == ([4, 5, 6], [], True)
    assert guard.check(-1e8 + 3, 7, behind_queue=False).release == [7]


@pytest.mark.parametrize(
    ("offset", "lost"),
    [
        # one scrape stamped five years ahead (the issue): it alone is dropped, never sent
        (lambda n: FIVE_YEARS_SECONDS if n == 4 else 0.0, {4}),
        # a clock five years ahead that NTP steps back after scrape 5: followed from scrape 6 on
        (lambda n: FIVE_YEARS_SECONDS if n <= 5 else 0.0, set()),
        # a Pi booted with yesterday's fake-hwclock time, set by NTP after scrape 5: nothing lost
        (lambda n: -86400.0 if n <= 5 else 0.0, set()),
    ],
    ids=["glitch-ahead", "ahead-then-back", "behind-then-set"],
)
async def test_pusher_recovers_from_clock_jumps_either_way(
    receiver: Receiver, tmp_path: Path, offset: Callable[[int], float], lost: set[int]
) -> None:
    counter = ScrapeCounter()
    registry = CollectorRegistry()
    registry.register(counter)
    pusher = Pusher(
        fast(receiver.url),
        registry,
        store_path=str(tmp_path / "s.sqlite"),
        probe_id="p1",
        clock=ScriptedClock(counter, offset),
    )
    await push_until(pusher, lambda: 12.0 in receiver.values("netprobe_test_scrapes"))
    values = receiver.values("netprobe_test_scrapes")
    expected = [float(n) for n in range(1, 13) if n not in lost]
    assert values[: len(expected)] == expected
    stamps = [
        stamp
        for request in receiver.bodies
        for series_labels, samples in request
        if ("__name__", "netprobe_test_scrapes") in series_labels
        for stamp, _ in samples
    ]
    late = [(a, b) for a, b in itertools.pairwise(stamps) if b <= a]
    # the receiver sees time order except once, across a jump back it had already been sent
    assert len(late) <= (1 if offset(1) > 0 and not lost else 0), late
    dropped = {
        s.labels["reason"]: s.value
        for f in pusher.collect()
        for s in f.samples
        if f.name == "netprobe_push_dropped_samples"
    }
    assert dropped.get("clock_jump", 0) == 2 * len(lost)  # the glitch scrape: its sample and `up`


async def test_no_scrape_is_stamped_before_the_clock_is_plausible(
    receiver: Receiver, tmp_path: Path
) -> None:
    synced_at = time.monotonic() + 0.5  # a Pi in 1970 until NTP answers

    def clock() -> float:
        return time.time() - (1.7e9 if time.monotonic() < synced_at else 0.0)

    pusher = Pusher(
        fast(receiver.url),
        counting_registry(),
        store_path=str(tmp_path / "s.sqlite"),
        probe_id="p1",
        clock=clock,
    )
    await push_until(pusher, lambda: 3.0 in receiver.values("netprobe_test_scrapes"))
    assert receiver.values("netprobe_test_scrapes")[:3] == [1.0, 2.0, 3.0]
    stamps = [
        stamp for request in receiver.bodies for _, samples in request for stamp, _ in samples
    ]
    assert min(stamps) > (time.time() - 60) * 1000


async def test_outbox_stamped_ahead_before_a_restart_is_dropped_then_pushing_resumes(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = str(tmp_path / "s.sqlite")
    outbox = Outbox.open(path)
    ahead_ms = int((time.time() + FIVE_YEARS_SECONDS) * 1000)
    outbox.enqueue(
        ahead_ms, [(labels("netprobe_test_scrapes"), 0.0)], max_age_ms=10**12, max_samples=100
    )
    outbox.close()
    pusher = Pusher(fast(receiver.url), counting_registry(), store_path=path, probe_id="p1")
    await push_until(pusher, lambda: 5.0 in receiver.values("netprobe_test_scrapes"))
    assert receiver.values("netprobe_test_scrapes")[:5] == [1.0, 2.0, 3.0, 4.0, 5.0]
    dropped = {
        s.labels["reason"]: s.value
        for f in pusher.collect()
        for s in f.samples
        if f.name == "netprobe_push_dropped_samples"
    }
    assert dropped == {"clock_backwards": 1}
