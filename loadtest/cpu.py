"""The load generator's CPU: sampled with psutil during a run, judged afterwards (client-bound or not).

Usage::

    sampler = CpuSampler(locust_pid, interval_s=1.0).start()
    ...; samples = sampler.stop()                      # list[CpuSample]
    write_cpu_csv(samples, run_dir / "cpu.csv")
    verdict = judge_client(samples, processes=1)       # .client_bound, .reason

A Locust process runs its users on one gevent loop, i.e. on one core: when any Locust process sits
near 100 % of a core it cannot send faster, and the measured throughput is the client's limit, not
the server's. When the whole machine is saturated (client and server sharing cores, as in every
local run) the numbers describe the machine, not the service.
"""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PROCESS_BOUND_PERCENT = 90.0
"""A Locust process at or above this share of one core is saturated (Locust warns at 90 % too)."""
HOST_BOUND_PERCENT = 90.0
BOUND_FRACTION = 0.25
"""Saturated in at least this fraction of the samples → flagged."""


@dataclass(frozen=True)
class CpuSample:
    """One sample: seconds since start, Locust's CPU (all its processes, % of one core), its busiest
    process, the whole machine (% of all cores) and the number of Locust processes."""

    t_s: float
    locust_percent: float
    busiest_percent: float
    host_percent: float
    locust_processes: int


@dataclass(frozen=True)
class ClientVerdict:
    """Whether the load generator limited the run, with the numbers behind the verdict."""

    client_bound: bool
    host_saturated: bool
    reason: str
    busiest_p90: float
    host_mean: float
    samples: int


def judge_client(samples: list[CpuSample], processes: int = 1, skip_s: float = 2.0) -> ClientVerdict:
    """Pure: flag a run whose busiest Locust process sat at >= 90 % of a core in >= 25 % of samples.

    Samples in the first ``skip_s`` seconds (start-up: imports, reading the image) are ignored.
    """
    steady = [s for s in samples if s.t_s >= skip_s] or list(samples)
    if not steady:
        return ClientVerdict(False, False, "no CPU samples", 0.0, 0.0, 0)
    busy = sum(1 for s in steady if s.busiest_percent >= PROCESS_BOUND_PERCENT) / len(steady)
    hot = sum(1 for s in steady if s.host_percent >= HOST_BOUND_PERCENT) / len(steady)
    ordered = sorted(s.busiest_percent for s in steady)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    host_mean = sum(s.host_percent for s in steady) / len(steady)
    client_bound = busy >= BOUND_FRACTION
    host_saturated = hot >= BOUND_FRACTION
    parts = []
    if client_bound:
        parts.append(f"a Locust process was at >= {PROCESS_BOUND_PERCENT:g} % of a core in {busy:.0%} of the "
                     f"samples: the load generator limited the request rate"
                     + ("" if processes > 1 else "; use more processes (--processes)"))
    if host_saturated:
        parts.append(f"the machine was at >= {HOST_BOUND_PERCENT:g} % CPU in {hot:.0%} of the samples: client "
                     "and anything else on it compete for the cores")
    reason = "; ".join(parts) if parts else (f"not client-bound (busiest Locust process p90 {p90:.0f} % of a core, "
                                             f"machine mean {host_mean:.0f} %)")
    return ClientVerdict(client_bound, host_saturated, reason, round(p90, 1), round(host_mean, 1), len(steady))


def write_cpu_csv(samples: list[CpuSample], path: Path) -> None:
    """One row per sample, columns as :class:`CpuSample`."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(CpuSample)])
        writer.writeheader()
        for sample in samples:
            writer.writerow(asdict(sample))


def read_cpu_csv(path: Path) -> list[CpuSample]:
    """The samples written by :func:`write_cpu_csv` (empty if the file is missing)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [CpuSample(float(r["t_s"]), float(r["locust_percent"]), float(r["busiest_percent"]),
                          float(r["host_percent"]), int(r["locust_processes"])) for r in csv.DictReader(fh)]


class CpuSampler:
    """Samples a process tree (the Locust command and its children) and the machine in a thread."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._procs: dict[int, object] = {}

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> list[CpuSample]:
        self._stop.set()
        self._thread.join(timeout=5)
        return list(self.samples)

    def _tree(self) -> list[object]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            current = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        known = {}
        for proc in current:  # keep Process objects so cpu_percent measures since the last sample
            known[proc.pid] = self._procs.get(proc.pid, proc)
        self._procs = known
        return list(known.values())

    def _run(self) -> None:
        import psutil

        started = time.monotonic()
        psutil.cpu_percent(None)
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)  # type: ignore[attr-defined]
        while not self._stop.wait(self.interval_s):
            per_process = []
            for proc in self._tree():
                try:
                    per_process.append(proc.cpu_percent(None))  # type: ignore[attr-defined]
                except psutil.Error:
                    continue
            self.samples.append(CpuSample(
                t_s=round(time.monotonic() - started, 2),
                locust_percent=round(sum(per_process), 1),
                busiest_percent=round(max(per_process, default=0.0), 1),
                host_percent=round(psutil.cpu_percent(None), 1),
                locust_processes=len(per_process),
            ))
