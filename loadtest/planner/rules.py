"""Every constant the model uses, with its value, unit and source; overridable by name (pure).

Usage::

    rules = Rules()                                   # the documented defaults
    rules = with_overrides(Rules(), ["target_cpu=0.7", "push_window_start=1"])   # RulesError on a bad one
    rules.target_cpu, RULE_SOURCES["target_cpu"]      # 0.6, ('fraction', 'field.md: ...')
    print(rules_table())                              # markdown: name | value | unit | source

Sources are ``field.md`` (the project's notes on Google's Cloud Run and Pub/Sub documentation,
``/work/shared/notes/field.md``, checked 2026-12), our own measurements (named with the document that
records them), or, where Google documents a behaviour but not its number, an **assumption** said as
such. ``python -m loadtest plan --set NAME=VALUE`` (also ``simulate`` and ``reproduce``) overrides any
of them; the results then say so.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

PRICES_CHECKED = "2026-12"
"""When field.md's prices were copied from Google's pricing pages (tier 1, USD)."""


class RulesError(ValueError):
    """A ``--set NAME=VALUE`` that names no rule or has a bad value."""


@dataclass(frozen=True)
class Rules:
    """The model's constants. See :data:`RULE_SOURCES` for where each comes from."""

    # Cloud Run: autoscaling
    target_cpu: float = 0.60
    target_concurrency: float = 0.60
    averaging_window_s: float = 60.0
    pending_wait_min_s: float = 10.0
    pending_wait_startup_factor: float = 3.5
    idle_keep_s: float = 900.0
    autoscaler_tick_s: float = 1.0
    cold_start_overhead_s: float = 0.0
    boost_cpu_factor: float = 1.0
    service_time_factor: float = 1.0
    # Pub/Sub push
    push_window_start: float = 5.0
    push_window_linear_above: float = 3000.0
    push_window_shrink: float = 0.5
    push_slow_latency_s: float = 1.0
    push_min_ack_ratio: float = 0.99
    push_health_period_s: float = 1.0
    nack_pause_min_s: float = 0.1
    nack_pause_max_s: float = 60.0
    retry_min_s: float = 10.0
    retry_max_s: float = 600.0
    max_delivery_attempts: float = 5.0
    push_ack_deadline_s: float = 600.0
    emulator_push_window: float = 2.0
    # clients
    client_timeout_s: float = 60.0
    retry_after_cap_s: float = 30.0
    local_client_max_rps: float = 1066.0
    study_client_max_rps: float = 300.0
    # prices (USD, tier 1)
    price_vcpu_s_request: float = 0.000024
    price_gib_s_request: float = 0.0000025
    price_per_million_requests: float = 0.40
    price_vcpu_s_instance: float = 0.000018
    price_gib_s_instance: float = 0.000002
    price_idle_vcpu_s: float = 0.000024
    price_idle_gib_s: float = 0.0000025
    price_pubsub_tib: float = 40.0
    pubsub_min_bytes: float = 1000.0
    price_gcs_class_a_per_1000: float = 0.005
    gcs_writes_per_frame: float = 2.0
    gcs_writes_per_request: float = 1.0


FIELD = "field.md"
RULE_SOURCES: dict[str, tuple[str, str]] = {
    "target_cpu": ("fraction", f"{FIELD}: Cloud Run autoscaling targets 60 % CPU (configurable 10-90 %)"),
    "target_concurrency": ("fraction", f"{FIELD}: ... and 60 % of max concurrency by default (10-95 %)"),
    "averaging_window_s": ("s", f"{FIELD}: CPU averaged over 1 min; the model averages in-flight requests over the "
                                "same window (assumption: field.md names the window for CPU only)"),
    "pending_wait_min_s": ("s", f"{FIELD}: at max instances a request waits up to max(10 s, 3.5 x average startup "
                                "time) for a free instance, then gets 429 (the model applies the same wait below max, "
                                "while new instances start: assumption)"),
    "pending_wait_startup_factor": ("x", f"{FIELD}: the 3.5 of max(10 s, 3.5 x average startup time)"),
    "idle_keep_s": ("s", f"{FIELD}: an idle instance is kept up to 15 min (the model keeps it the whole 15 min)"),
    "autoscaler_tick_s": ("s", "model resolution: how often the model evaluates the autoscaler (not Google's)"),
    "cold_start_overhead_s": ("s", "not in field.md: platform time before the container starts (image pull, "
                                   "sandbox); 0 unless set"),
    "boost_cpu_factor": ("x", f"{FIELD} says startup CPU boost shortens starts but not by how much; 1 = no effect "
                              "unless set (startup is then the profile's startup time at factor x vCPU)"),
    "service_time_factor": ("x", "our measurement as recorded in the profile (1); set e.g. 1.5 to ask what a slower "
                                 "vCPU than the calibration machine's would need"),
    "push_window_start": ("pushes", f"{FIELD}: the push window starts small (single digits); 5 is the middle of "
                                    "1-9 (assumption)"),
    "push_window_linear_above": ("outstanding", f"{FIELD}: grows exponentially, linearly past 3,000 outstanding"),
    "push_window_shrink": ("x", f"{FIELD}: shrinks on every failure, by an undocumented amount; halved here "
                                "(assumption, as TCP's congestion window)"),
    "push_slow_latency_s": ("s", f"{FIELD}: falls back when average latency > 1 s"),
    "push_min_ack_ratio": ("fraction", f"{FIELD}: ... or < 99 % acked; the model also takes < 99 % acked in a period "
                                       "as 'too many NACKs' (assumption)"),
    "push_health_period_s": ("s", "assumption: the period over which push latency and the ack ratio are averaged"),
    "nack_pause_min_s": ("s", f"{FIELD}: too many NACKs pause the whole subscription 100 ms - 60 s (the model "
                              "doubles the pause per unhealthy period: assumption)"),
    "nack_pause_max_s": ("s", f"{FIELD}: ... up to 60 s, not configurable"),
    "retry_min_s": ("s", f"{FIELD}: retry policy 0-600 s, default minimum 10 s (deploy.gcp's --min-retry-delay); "
                         "doubling per attempt (assumption: exponential backoff's factor is not in field.md)"),
    "retry_max_s": ("s", f"{FIELD}: retry policy default maximum 600 s (deploy.gcp's --max-retry-delay)"),
    "max_delivery_attempts": ("attempts", f"{FIELD}: dead-letter topic after 5-100 attempts; 5 is deploy.gcp's "
                                          "--max-delivery-attempts"),
    "push_ack_deadline_s": ("s", f"{FIELD}: ack deadline up to 600 s, a push request's timeout; 600 is deploy.gcp's"),
    "emulator_push_window": ("pushes", "our measurement (README, docs/worker.md): the official emulator keeps "
                                       "exactly 2 push requests in flight per subscription"),
    "client_timeout_s": ("s", "docs/loadtest.md: Locust's 60 s network and connection timeouts (our locustfile)"),
    "retry_after_cap_s": ("s", "loadtest.profiles.MAX_RETRY_AFTER_S: the retry-after client waits at most 30 s"),
    "local_client_max_rps": ("req/s", "our measurement (docs/loadtest.md, make loadtest 2026-11-28 18:19): one Locust "
                                      "process sent 1,065.7 requests/s; the model's limit per Locust process"),
    "study_client_max_rps": ("req/s", f"{FIELD}: the study's ~300 req/s plateau, with and without inference, "
                                      "probably its single-process Locust client (reproduce's client-bound variant)"),
    "price_vcpu_s_request": ("USD", f"{FIELD}: Cloud Run request-based $0.000024 / vCPU-s (checked {PRICES_CHECKED})"),
    "price_gib_s_request": ("USD", f"{FIELD}: request-based $0.0000025 / GiB-s"),
    "price_per_million_requests": ("USD", f"{FIELD}: request-based $0.40 per million requests"),
    "price_vcpu_s_instance": ("USD", f"{FIELD}: instance-based $0.000018 / vCPU-s (worker pools, CPU always on)"),
    "price_gib_s_instance": ("USD", f"{FIELD}: instance-based $0.000002 / GiB-s"),
    "price_idle_vcpu_s": ("USD", f"{FIELD} has no idle price for min instances under request-based billing; "
                                 "billed at the active price, an upper bound"),
    "price_idle_gib_s": ("USD", "as price_idle_vcpu_s: the active request-based GiB-s price, an upper bound"),
    "price_pubsub_tib": ("USD", f"{FIELD}: Pub/Sub $40 / TiB, publish and each delivery"),
    "pubsub_min_bytes": ("bytes", f"{FIELD}: Pub/Sub bills at least 1,000 bytes per request"),
    "price_gcs_class_a_per_1000": ("USD", f"{FIELD}: GCS Class A $0.005 / 1,000 operations (object writes)"),
    "gcs_writes_per_frame": ("writes", "docs/worker.md: the annotated JPEG and the detections record per frame"),
    "gcs_writes_per_request": ("writes", "docs/worker.md: /predict stores the annotated JPEG"),
}


def _parse_one(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise RulesError(f"--set {text!r}: expected NAME=VALUE")
    if name not in RULE_SOURCES:
        close = difflib.get_close_matches(name, list(RULE_SOURCES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RulesError(f"--set {text!r}: no rule named {name!r}{hint}; python -m loadtest plan --rules lists them")
    try:
        number = float(value)
    except ValueError:
        raise RulesError(f"--set {text!r}: {value.strip()!r} is not a number") from None
    if number < 0 or number != number or number == float("inf"):
        raise RulesError(f"--set {text!r}: must be a finite number >= 0")
    return name, number


def with_overrides(rules: Rules, settings: Sequence[str]) -> Rules:
    """``rules`` with each ``NAME=VALUE`` of ``settings`` applied; :class:`RulesError` names a bad one."""
    changes = dict(_parse_one(text) for text in settings)
    return dataclasses.replace(rules, **changes) if changes else rules


def changed(rules: Rules) -> dict[str, float]:
    """The rules that differ from the defaults (for the provenance line of a result)."""
    default = Rules()
    return {f.name: getattr(rules, f.name) for f in dataclasses.fields(Rules)
            if getattr(rules, f.name) != getattr(default, f.name)}


def rules_table(rules: Rules | None = None) -> str:
    """Markdown table of every rule: name, value, unit, source (pure)."""
    rules = rules or Rules()
    lines = ["| rule | value | unit | source |", "|---|---|---|---|"]
    for f in dataclasses.fields(Rules):
        unit, source = RULE_SOURCES[f.name]
        lines.append(f"| `{f.name}` | {getattr(rules, f.name):g} | {unit} | {source} |")
    return "\n".join(lines) + "\n"
