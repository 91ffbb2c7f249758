"""The calibration profile: measured service times, startup time and memory, with their provenance (JSON).

Usage::

    profile = load_profile()                            # loadtest/planner/profiles/local-2core.json
    profile = load_profile(Path("my-profile.json"))     # ProfileError with the reason if unusable
    entry = profile.service("frame", concurrency_per_process=3)     # nearest measured entry of that kind
    entry.lock.sample(u)                                # seconds, from the measured distribution (inverse CDF)
    profile.startup_s(cpus=1), profile.peak_rss_mib     # measured container start, one process's memory
    print(provenance_line(profile, entry))              # printed with every result
    save_profile(profile, path)

A service entry is one measured run (a load test or a benchmark) of our worker: per frame (``frame``,
Pub/Sub push or pull) or per front-door request (``request``), on ``cores`` cores shared by
``processes`` worker processes, each holding up to ``concurrency_per_process`` at once. For each
frame or request the worker logs its stage times; the entry keeps their distributions as 101
quantiles (p0..p100, ms):

- ``lock``: model + draw, the time the request holds its process's pipeline (one at a time): the
  model's *server* time. On the 2-core machine its mean matched the measured time between departures
  within 5 % (31.1 vs 32.6 ms, 52.7 vs 56.0 ms);
- ``outside``: decode + encode + storage writes, before and after the pipeline, overlapping other
  requests' inference: added to the latency, not to the server;
- ``cpu``: decode + model + draw + encode, the CPU a frame costs (the autoscaler's CPU metric).

``observed`` is what that run measured at the client (goodput, latency): kept for
``python -m loadtest reproduce`` to compare with, never read by the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = PROFILE_DIR / "local-2core.json"
FORMAT = 1
QUANTILES = 101
KINDS = ("frame", "request")


class ProfileError(ValueError):
    """A profile file that cannot be used (missing, not JSON, wrong format, no entry of a kind)."""


@dataclass(frozen=True)
class Distribution:
    """An empirical distribution as 101 quantiles in ms (p0, p1, ... p100); sampled by inverse CDF."""

    quantiles_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.quantiles_ms) != QUANTILES or list(self.quantiles_ms) != sorted(self.quantiles_ms):
            raise ProfileError(f"a distribution needs {QUANTILES} ascending quantiles, got {len(self.quantiles_ms)}")
        if self.quantiles_ms[0] < 0:
            raise ProfileError("a distribution of times cannot be negative")

    @classmethod
    def from_values(cls, values_ms: Sequence[float]) -> Distribution:
        """Quantiles of measured values (linear interpolation between order statistics)."""
        if not values_ms:
            raise ProfileError("no measured values")
        ordered = sorted(values_ms)
        n = len(ordered)
        out = []
        for i in range(QUANTILES):
            position = i / (QUANTILES - 1) * (n - 1)
            low = math.floor(position)
            high = min(low + 1, n - 1)
            out.append(round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 3))
        return cls(tuple(out))

    @classmethod
    def constant(cls, ms: float) -> Distribution:
        return cls(tuple([float(ms)] * QUANTILES))

    def sample_s(self, u: float) -> float:
        """The value at probability ``u`` in [0, 1), in seconds (linear between quantiles)."""
        position = u * (QUANTILES - 1)
        low = int(position)
        high = min(low + 1, QUANTILES - 1)
        q = self.quantiles_ms
        return (q[low] + (q[high] - q[low]) * (position - low)) / 1000.0

    @property
    def mean_s(self) -> float:
        """Mean of the piecewise-linear quantile function, seconds."""
        q = self.quantiles_ms
        return sum((q[i] + q[i + 1]) / 2 for i in range(QUANTILES - 1)) / (QUANTILES - 1) / 1000.0

    def quantile_ms(self, p: float) -> float:
        return self.sample_s(min(max(p, 0.0), 1.0)) * 1000.0

    def scaled(self, factor: float) -> Distribution:
        """The same shape, every value times ``factor`` (a fitted mean keeps the measured spread)."""
        return Distribution(tuple(round(v * factor, 4) for v in self.quantiles_ms))


@dataclass(frozen=True)
class ServiceEntry:
    """One measured run of our worker (see the module docstring)."""

    id: str
    kind: str
    source: str
    recorded_at: str
    cores: int
    processes: int
    concurrency_per_process: float
    delivery: str
    samples: int
    lock: Distribution
    outside: Distribution
    cpu: Distribution
    image_bytes: int
    load: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    role: str = "calibration"
    """``calibration``: the model may use it; ``validation``: kept only to be predicted by ``reproduce``."""

    @property
    def contention(self) -> float:
        """The run's mean host CPU (%), 0 when unknown: how much else competed for the cores."""
        return float(self.host.get("host_mean") or 0.0)

    @property
    def cores_per_process(self) -> float:
        return self.cores / self.processes

    def describe(self) -> str:
        return (f"{self.id} ({self.kind}, {self.samples} samples from {self.source}, {self.processes} processes on "
                f"{self.cores} cores, {self.concurrency_per_process:g} per process; lock mean "
                f"{self.lock.mean_s * 1000:.1f} ms)")


@dataclass(frozen=True)
class StartupEntry:
    """Container start to ready (imports, pipeline built, warm-up inference) on ``cpus`` cores."""

    cpus: int
    samples_s: tuple[float, ...]
    peak_rss_mib: float

    @property
    def median_s(self) -> float:
        ordered = sorted(self.samples_s)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class Profile:
    """Everything measured the model needs, and where it came from."""

    provenance: dict[str, Any]
    entries: tuple[ServiceEntry, ...]
    startup: tuple[StartupEntry, ...]
    path: str = ""
    delivery_delay: Distribution | None = None
    """The local emulator's publish-to-delivery time at light load (ms quantiles), if measured."""
    delivery_source: str = ""
    http_rtt_s: float = 0.0
    """A measured HTTP round trip on the machine (client to worker and back, nothing else)."""

    def entry(self, entry_id: str) -> ServiceEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        known = ", ".join(e.id for e in self.entries)
        raise ProfileError(f"no service entry {entry_id!r} in {self.path or 'the profile'} (it has: {known})")

    def service(self, kind: str, concurrency_per_process: float) -> ServiceEntry:
        """The calibration entry of ``kind`` measured nearest to ``concurrency_per_process`` (log scale), then the
        least contended (lowest host CPU: the nearest to a dedicated vCPU), then the one with most samples."""
        candidates = [e for e in self.entries if e.kind == kind and e.role == "calibration"]
        if not candidates:
            raise ProfileError(f"{self.path or 'the profile'} has no {kind!r} calibration entry; record one with "
                               "python -m loadtest calibrate")
        target = math.log(max(concurrency_per_process, 1e-9))
        return min(candidates, key=lambda e: (round(abs(math.log(e.concurrency_per_process) - target), 6),
                                              e.contention, -e.samples))

    def startup_s(self, cpus: float) -> float:
        """Median measured start at the nearest measured core count at or below ``cpus`` (else the fewest)."""
        if not self.startup:
            raise ProfileError(f"{self.path or 'the profile'} has no startup measurement")
        ordered = sorted(self.startup, key=lambda s: s.cpus)
        chosen = [s for s in ordered if s.cpus <= cpus + 1e-9]
        return (chosen[-1] if chosen else ordered[0]).median_s

    @property
    def peak_rss_mib(self) -> float:
        """The largest measured peak RSS of one worker process."""
        return max((s.peak_rss_mib for s in self.startup), default=0.0)


def provenance_line(profile: Profile, entry: ServiceEntry | None = None) -> str:
    """What a result rests on (printed with every result): the profile, when and how it was recorded, and the
    service entry and startup measurements used. The full calibrate command is in the file's provenance."""
    p = profile.provenance
    runs = len(profile.entries)
    line = (f"profile {profile.path or 'profile'}: recorded {p.get('recorded_at', '?')} at commit "
            f"{p.get('git_commit', '?')} on {p.get('machine', {}).get('cores', '?')} cores by "
            f"python -m loadtest calibrate ({runs} run{'s' if runs != 1 else ''})")
    if entry is not None:
        line += f"\n  service: {entry.describe()}"
    if profile.startup:
        starts = ", ".join(f"{s.median_s:.1f} s on {s.cpus} core{'s' if s.cpus > 1 else ''}" for s in profile.startup)
        line += f"\n  startup (measured, median): {starts}; peak RSS {profile.peak_rss_mib:.0f} MiB per process"
    return line


# ------------------------------------------------------------------ JSON


def _distribution(data: Any, where: str) -> Distribution:
    if not isinstance(data, list):
        raise ProfileError(f"{where}: expected a list of {QUANTILES} quantiles")
    return Distribution(tuple(float(v) for v in data))


def profile_from_json(data: Any, path: str = "") -> Profile:
    """Parse a profile document; :class:`ProfileError` names what is wrong."""
    name = path or "profile"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{name}: not a planner profile (format {FORMAT}); record one with "
                           "python -m loadtest calibrate")
    try:
        entries = tuple(
            ServiceEntry(id=e["id"], kind=e["kind"], source=e["source"], recorded_at=e["recorded_at"],
                         cores=int(e["cores"]), processes=int(e["processes"]),
                         concurrency_per_process=float(e["concurrency_per_process"]), delivery=e["delivery"],
                         samples=int(e["samples"]), lock=_distribution(e["lock_ms"], f"{name}: {e['id']}.lock_ms"),
                         outside=_distribution(e["outside_ms"], f"{name}: {e['id']}.outside_ms"),
                         cpu=_distribution(e["cpu_ms"], f"{name}: {e['id']}.cpu_ms"),
                         image_bytes=int(e["image_bytes"]), load=dict(e.get("load", {})),
                         host=dict(e.get("host", {})), observed=dict(e.get("observed", {})),
                         role=str(e.get("role", "calibration")))
            for e in data.get("service", []))
        delivery = data.get("delivery")
        delivery_delay = _distribution(delivery["ms"], f"{name}: delivery.ms") if delivery else None
        delivery_source = str(delivery["source"]) if delivery else ""
        http_rtt_s = float(data.get("http_rtt_s", 0.0))
        startup = tuple(StartupEntry(cpus=int(s["cpus"]), samples_s=tuple(float(v) for v in s["samples_s"]),
                                     peak_rss_mib=float(s["peak_rss_mib"])) for s in data.get("startup", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{name}: malformed profile ({type(exc).__name__}: {exc})") from None
    for entry in entries:
        if entry.kind not in KINDS:
            raise ProfileError(f"{name}: {entry.id}: kind must be one of {', '.join(KINDS)}, got {entry.kind!r}")
    return Profile(provenance=dict(data.get("provenance", {})), entries=entries, startup=startup, path=path,
                   delivery_delay=delivery_delay, delivery_source=delivery_source, http_rtt_s=http_rtt_s)


def profile_to_json(profile: Profile) -> dict[str, Any]:
    service = []
    for e in profile.entries:
        d = asdict(e)
        for key in ("lock", "outside", "cpu"):
            d[f"{key}_ms"] = list(d.pop(key)["quantiles_ms"])
        service.append(d)
    out: dict[str, Any] = {"format": FORMAT, "provenance": profile.provenance, "service": service,
                           "startup": [{"cpus": s.cpus, "samples_s": list(s.samples_s), "peak_rss_mib": s.peak_rss_mib}
                                       for s in profile.startup],
                           "http_rtt_s": profile.http_rtt_s}
    if profile.delivery_delay is not None:
        out["delivery"] = {"source": profile.delivery_source, "ms": list(profile.delivery_delay.quantiles_ms)}
    return out


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_profile(path: Path | None = None) -> Profile:
    """Read a profile (default :data:`DEFAULT_PROFILE`)."""
    path = path or DEFAULT_PROFILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile; record one with python -m loadtest calibrate") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON ({exc})") from None
    return profile_from_json(data, _display_path(path))


def save_profile(profile: Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile_to_json(profile), indent=1) + "\n")
