"""Prometheus metrics, in a registry per app so several servers can live in one process (tests)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    queue_depth: Gauge
    batch_size: Histogram
    batch_seconds: Histogram
    audio_seconds: Counter
    dropped_pieces: Counter
    reading: Gauge
    read_timeouts: Counter
    realtime_sessions: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes and CPU seconds: what the server costs (Linux)
        return cls(
            registry=r,
            requests=Counter("medasr_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r),
            latency=Histogram(
                "medasr_request_latency_seconds", "time to answer, by endpoint", ["endpoint"],
                buckets=LATENCY_BUCKETS, registry=r,
            ),
            queue_depth=Gauge("medasr_queue_depth", "audio pieces waiting for a batch", registry=r),
            batch_size=Histogram("medasr_batch_size", "pieces per model batch", buckets=BATCH_BUCKETS, registry=r),
            batch_seconds=Histogram("medasr_batch_seconds", "model time per batch", buckets=LATENCY_BUCKETS, registry=r),
            audio_seconds=Counter("medasr_audio_seconds", "seconds of audio transcribed", registry=r),
            dropped_pieces=Counter(
                "medasr_dropped_pieces", "pieces dropped before their batch (client gone or deadline passed)", registry=r
            ),
            reading=Gauge("medasr_reading_requests", "requests whose body is still arriving", registry=r),
            read_timeouts=Counter(
                "medasr_read_timeouts", "requests dropped with 408: the body did not arrive within --read-timeout-s", registry=r
            ),
            realtime_sessions=Gauge("medasr_realtime_sessions", "live WebSocket sessions open", registry=r),
        )  # fmt: skip

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
