"""The contracted rates a line is judged against, in bytes per second.

    contract = Contract.from_rates(download=parse_rate("100Mbit"), upload=parse_rate("40Mbit"),
                                   download_normal=parse_rate("80Mbit"))
    contract.rate("download", "theoretical")   # 12_500_000.0

`theoretical` is the advertised or contracted maximum (签约速率, "vertraglich vereinbarte
maximale Geschwindigkeit", FCC "advertised", ACCC "plan speed"); `normal` the normally available
rate and `minimum` the contracted minimum (both EU terms, absent from many contracts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from netprobe.results import Direction

RateKind = Literal["theoretical", "normal", "minimum"]
RATE_KINDS: tuple[RateKind, ...] = ("theoretical", "normal", "minimum")


class RatePair(Protocol):
    """A download/upload pair of rates in bytes/s (the agent config's `DirectionRates`)."""

    @property
    def download(self) -> float: ...
    @property
    def upload(self) -> float: ...


class ContractSection(Protocol):
    """The agent config's `contract:` section, as far as verdicts need it."""

    @property
    def download(self) -> float: ...
    @property
    def upload(self) -> float: ...
    @property
    def normal(self) -> RatePair | None: ...
    @property
    def minimum(self) -> RatePair | None: ...


@dataclass(frozen=True)
class DirectionContract:
    """The rates promised for one direction; `None` where the contract names none."""

    theoretical: float
    normal: float | None = None
    minimum: float | None = None


@dataclass(frozen=True)
class Contract:
    """What the operator promised, per direction."""

    download: DirectionContract
    upload: DirectionContract

    @classmethod
    def from_rates(
        cls,
        *,
        download: float,
        upload: float,
        download_normal: float | None = None,
        upload_normal: float | None = None,
        download_minimum: float | None = None,
        upload_minimum: float | None = None,
    ) -> Contract:
        """A contract from plain rates in bytes/s (the agent builds it from its config)."""
        for name, value in (("download", download), ("upload", upload)):
            if value <= 0:
                raise ValueError(f"the contracted {name} rate must be above zero, got {value!r}")
        return cls(
            DirectionContract(download, download_normal, download_minimum),
            DirectionContract(upload, upload_normal, upload_minimum),
        )

    @classmethod
    def from_config(cls, section: ContractSection) -> Contract:
        """The contract of an agent configuration's `contract:` section."""
        normal, minimum = section.normal, section.minimum
        return cls.from_rates(
            download=section.download,
            upload=section.upload,
            download_normal=normal.download if normal else None,
            upload_normal=normal.upload if normal else None,
            download_minimum=minimum.download if minimum else None,
            upload_minimum=minimum.upload if minimum else None,
        )

    def direction(self, direction: Direction) -> DirectionContract:
        return self.download if direction == "download" else self.upload

    def rate(self, direction: Direction, kind: RateKind) -> float | None:
        value: float | None = getattr(self.direction(direction), kind)
        return value

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        return {
            direction: {kind: self.rate(direction, kind) for kind in RATE_KINDS}
            for direction in ("download", "upload")
        }
