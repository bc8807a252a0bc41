"""A small exporter of our own for the real-client tests: gauges, counters (one resetting every
12 s), a histogram and a NaN gauge, with several label values, all functions of the time since
it started, served by prometheus_client on 127.0.0.1."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0)


class AppCollector(Collector):
    def __init__(self, prefix: str = "app") -> None:
        self.prefix = prefix
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        e = time.time() - self.started
        p = self.prefix
        temperature = GaugeMetricFamily(
            f"{p}_temperature_celsius", "Room temperature.", labels=["room"]
        )
        for i, room in enumerate(("a", "b", "c")):
            temperature.add_metric([room], 20 + 5 * math.sin(e / 7 + i) + i * 0.37)
        yield temperature
        queue = GaugeMetricFamily(f"{p}_queue_length", "Queued jobs.", labels=["queue"])
        for i, name in enumerate(("q1", "q2")):
            queue.add_metric([name], float(math.floor(e * 3 + 7 * i) % 17))
        yield queue
        ratio = GaugeMetricFamily(f"{p}_ratio", "A ratio, undefined for one kind.", labels=["kind"])
        ratio.add_metric(["ok"], 0.5 + e / 1000)
        ratio.add_metric(["nan"], math.nan)
        yield ratio
        requests = CounterMetricFamily(
            f"{p}_requests", "Requests served.", labels=["method", "status"]
        )
        for i, (method, status) in enumerate((("get", "200"), ("get", "500"), ("post", "200"))):
            requests.add_metric([method, status], (i + 1) * 3.25 * e + 100 * i)
        yield requests
        restarting = CounterMetricFamily(
            f"{p}_restarting", "A counter that resets.", labels=["instance"]
        )
        restarting.add_metric(["x"], (e % 12) * 4 + 1)
        yield restarting
        latency = HistogramMetricFamily(
            f"{p}_latency_seconds", "Request latency.", labels=["handler"]
        )
        for i, handler in enumerate(("api", "web")):
            total, buckets, cumulative = 0.0, [], 0.0
            for j, bound in enumerate(BUCKETS):
                cumulative += (j + 1 + i) * e
                buckets.append((str(bound), cumulative))
            cumulative += 2 * e
            buckets.append(("+Inf", cumulative))
            total = cumulative * 0.21 * (i + 1)
            latency.add_metric([handler], buckets, total)
        yield latency


class Exporter:
    """Serves /metrics on 127.0.0.1:port in a thread until `stop()`."""

    def __init__(self, port: int, prefix: str = "app") -> None:
        registry = CollectorRegistry()
        registry.register(AppCollector(prefix))
        self.server: WSGIServer
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=registry)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
