"""Prometheus metrics (prometheus-client), one ``CollectorRegistry`` per app so that tests (and
two apps in one process) never share counters.

The places where things happen (the outbox sender, inbound ``store``, the job runner) know the
``Database`` they work on but not the app, so an app registers its ``Metrics`` for its database
(``register(db)``) and those places look it up with ``for_db(db)``; with none registered (the
CLI, unit tests) they get ``NOOP``, which records nothing.
"""
from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
JOB_BUCKETS = (0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter("arbot_messages_in", "Incoming chat events by platform and result "
                                   "(stored, duplicate)", ["platform", "result"], registry=r)
        self.messages_out = Counter("arbot_messages_out", "Outbox deliveries by platform and result "
                                    "(sent, retried, dead, deferred)", ["platform", "result"], registry=r)
        self.outbox_latency = Histogram("arbot_outbox_latency_seconds", "From enqueue to delivery",
                                        ["platform"], buckets=LATENCY_BUCKETS, registry=r)
        self.job_duration = Histogram("arbot_job_duration_seconds", "Scheduled job run time",
                                      ["job", "status"], buckets=JOB_BUCKETS, registry=r)
        self.job_runs = Counter("arbot_job_runs", "Scheduled job runs by result (ok, failed)",
                                ["job", "status"], registry=r)
        self.outbox_messages = Gauge("arbot_outbox_messages", "Outbox rows by status, read at scrape time",
                                     ["status"], registry=r)

    # the instrumentation points call these
    def message_in(self, platform: str, result: str) -> None:
        self.messages_in.labels(platform, result).inc()

    def message_out(self, platform: str, result: str, latency: float | None = None) -> None:
        self.messages_out.labels(platform, result).inc()
        if latency is not None:
            self.outbox_latency.labels(platform).observe(max(0.0, latency))

    def job(self, name: str, status: str, seconds: float) -> None:
        self.job_duration.labels(name, status).observe(seconds)
        self.job_runs.labels(name, status).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Noop(Metrics):
    def __init__(self) -> None:   # no registry, no metric objects
        pass

    def message_in(self, platform: str, result: str) -> None:
        pass

    def message_out(self, platform: str, result: str, latency: float | None = None) -> None:
        pass

    def job(self, name: str, status: str, seconds: float) -> None:
        pass


NOOP = _Noop()
_BY_DB: "weakref.WeakKeyDictionary[object, Metrics]" = weakref.WeakKeyDictionary()


def register(db) -> Metrics:
    """The app's metrics, made once per database object."""
    m = _BY_DB.get(db)
    if m is None:
        m = _BY_DB[db] = Metrics()
    return m


def for_db(db) -> Metrics:
    return _BY_DB.get(db, NOOP)
