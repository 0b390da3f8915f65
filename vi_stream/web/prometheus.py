"""GET /metrics: the daemon's statistics in Prometheus' text format, through prometheus_client.

Nothing is counted twice: a collector reads the same snapshot /statistics returns at each
scrape, so the two never disagree. Counters (``_total``) are the monotonic counts since the
daemon started; gauges are levels (rates, queue depths, the spool); the latency histogram is
cumulative since start (receive -> the output stage, sent or dropped).
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from vi_stream.processing.control import STATES
from vi_stream.registry.drift import STATES as DRIFT_STATES

CONTENT_TYPE = CONTENT_TYPE_LATEST

_COUNTERS = (  # /statistics key, help
    ("frames_received", "frames taken from the input"),
    ("frames_processed", "frames scored"),
    ("frames_anomalous", "frames scored above the threshold"),
    ("frames_discarded_on_stop", "frames taken but dropped by a stop"),
    ("input_errors", "input messages that could not be read"),
    ("output_sent", "results handed to the output stream"),
    ("output_dropped", "results dropped because the output stream was full"),
    ("not_stored", "results that could not be handed to the store writer"),
)
_STORE_COUNTERS = (  # writer statistics key, metric name (spooled_total is spool writes: spooled is a level)
    ("submitted", "submitted"), ("carried_over", "carried_over"), ("set_aside", "set_aside"), ("stored", "stored"),
    ("spooled_total", "spool_writes"), ("errors", "errors"), ("render_failed", "render_failed"), ("lost", "lost"),
    ("submit_waits", "submit_waits"))
_STORE_GAUGES = ("spooled", "spooled_bytes", "failed", "queue", "queue_size", "held_in_memory")


class StatisticsCollector:
    """A prometheus_client collector over a ``statistics()`` callable (the Control interface's)."""

    def __init__(self, statistics: Callable[[], dict]):
        self.statistics = statistics

    def collect(self) -> Iterator[Metric]:
        s = self.statistics()
        for key, text in _COUNTERS:
            yield _counter(key, text, s[key])
        rejected = CounterMetricFamily("vi_stream_frames_rejected", "frames refused, by reason", labels=["reason"])
        for reason, n in sorted(s["frames_rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield _gauge("frames_per_second", "frames scored per second over the last window", s["frames_per_s"])
        yield _gauge("megapixels_per_second", "megapixels scored per second over the last window",
                     s["megapixels_per_s"])
        state = GaugeMetricFamily("vi_stream_state", "1 for the processor's current state", labels=["state"])
        for name in STATES:  # every state, 1 for the current one, so a dashboard can plot it
            state.add_metric([name], 1.0 if s["state"] == name else 0.0)
        yield state
        q = s["queues"]
        depth = GaugeMetricFamily("vi_stream_queue_depth", "items waiting", labels=["queue"])
        size = GaugeMetricFamily("vi_stream_queue_capacity", "queue bound", labels=["queue"])
        for name in ("input", "output"):
            depth.add_metric([name], q[name])
            size.add_metric([name], q[f"{name}_size"])
        yield depth
        yield size
        if s.get("last_score") is not None:
            yield _gauge("last_score", "image score of the last frame scored", s["last_score"])
        h = s["latency_histogram"]
        buckets = [(_le(le), n) for le, n in zip(h["le"], h["count_le"])] + [("+Inf", h["count"])]
        yield HistogramMetricFamily("vi_stream_latency_seconds", "receive -> output stage (sent or dropped), since start",
                                    buckets=buckets, sum_value=h["sum_s"])
        drift = s.get("drift")
        if drift:
            yield _gauge("drift_state", "drift watch: 0 green, 1 yellow, 2 red", DRIFT_STATES.index(drift["state"]))
            last = drift.get("last") or {}
            for key, text in (("ks", "drift watch: KS statistic of the last chunk against the model's reference"),
                              ("wasserstein", "drift watch: Wasserstein-1 of the last chunk, in reference spreads")):
                if key in last:
                    yield _gauge(f"drift_{key}", text, last[key])
        if s.get("model_version"):
            info = GaugeMetricFamily("vi_stream_model_version", "1 for the registry version judging frames",
                                     labels=["version"])
            info.add_metric([s["model_version"]], 1.0)
            yield info
        store = s.get("store")
        if store:
            yield _gauge("store_up", "1 while the store answers", 1.0 if store["up"] else 0.0)
            for key, name in _STORE_COUNTERS:
                yield _counter(f"store_{name}", f"store writer: {key.replace('_', ' ')}", store[key])
            for key in _STORE_GAUGES:
                yield _gauge(f"store_{key}", f"store writer: {key.replace('_', ' ')} (now)", store[key])


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"vi_stream_{name}", text, value=value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"vi_stream_{name}", text, value=value)


def _le(bound: float) -> str:
    return repr(float(bound))


def registry_for(statistics: Callable[[], dict]) -> CollectorRegistry:
    """A registry of its own (not the process-global one), so two daemons in one process, as in
    the tests, never share metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatisticsCollector(statistics))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
