"""Prometheus metrics of the HTTP layer, the repositories' events, the mirror, notifications and replication,
and the ``/metrics`` exposition.

Every label has a bounded set of values: routes are the endpoint *templates* (``/v2/{name}/manifests/
{reference}``), never a repository name, tag or digest, so a thousand repositories make no new series.
The storage layer's metrics (driver operations, S3 requests, GC and quotas) are in ``storage.metrics``,
the token server's in ``auth.metrics``; all register in prometheus-client's default registry.

Several worker processes (``http.workers`` > 1, or granian, whose workers are processes) share their
metrics through prometheus-client's multiprocess mode: ``registry.http.server`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start (or clears the one given in
the environment), every worker writes its samples there, and ``/metrics`` adds them up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from registry.writes.events import EventKind

if TYPE_CHECKING:
    from registry.writes.events import RepositoryEvent

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# request durations from a cached manifest GET (~1 ms) to a multi-GiB layer upload
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0)
HTTP_LABELS = ("route", "method", "status")

http_requests = Counter("moorage_http_requests_total", "HTTP requests answered, by route template, method "
                        "and status", HTTP_LABELS)
http_duration = Histogram("moorage_http_request_duration_seconds", "Time from a request's arrival to the end "
                          "of its answer", ("route", "method"), buckets=DURATION_BUCKETS)
http_request_bytes = Counter("moorage_http_request_bytes_total", "Request body bytes received", HTTP_LABELS)
http_response_bytes = Counter("moorage_http_response_bytes_total", "Response body bytes sent", HTTP_LABELS)
http_in_flight = Gauge("moorage_http_requests_in_flight", "Requests being answered now", multiprocess_mode="livesum")
uploads_in_flight = Gauge("moorage_uploads_in_flight", "Blob upload requests (POST, PATCH, PUT of an upload) "
                          "receiving data now", multiprocess_mode="livesum")
mirror_requests = Counter("moorage_mirror_requests_total", "Mirror lookups by kind (manifest, blob, tags) and "
                          "outcome (hit, miss, revalidated, stale)", ("kind", "outcome"))
mirror_upstream_fetches = Counter("moorage_mirror_upstream_fetches_total", "Downloads of manifests and blobs "
                                  "from an upstream, by kind and result (ok, error)", ("kind", "result"))
notification_events = Counter("moorage_notification_events_total", "Events queued for an endpoint",
                              ("endpoint",))
notification_deliveries = Counter("moorage_notification_deliveries_total", "Envelopes sent to an endpoint, by "
                                  "result (ok, error)", ("endpoint", "result"))
notification_delivered = Counter("moorage_notification_events_delivered_total", "Events an endpoint accepted",
                                 ("endpoint",))
notification_pending = Gauge("moorage_notification_events_pending", "Events in the durable queue at the last "
                             "look of a replica (the delivering one looks before each envelope)", ("endpoint",),
                             multiprocess_mode="mostrecent")
repository_events = Counter("moorage_repository_events_total", "Changes made through the write path (pushes, "
                            "tags, mounts, deletes) and pulls served, by event and by kind of actor",
                            ("event", "actor"))
repository_event_bytes = Counter("moorage_repository_event_bytes_total", "Bytes of the manifests and blobs "
                                 "pushed, mounted and pulled, by event", ("event",))
notification_dropped = Counter("moorage_notification_events_dropped_total", "Events dropped, oldest first, "
                               "because the endpoint's queue reached notifications maxevents", ("endpoint",))
replication_executions = Counter("moorage_replication_executions_total", "Replication executions finished, by "
                                 "rule, trigger (event, schedule, manual, retry) and state (succeeded, failed)",
                                 ("rule", "trigger", "state"))
replication_items = Counter("moorage_replication_items_total", "Replication items finished, by rule and outcome "
                            "(copied, unchanged, deleted, skipped, failed)", ("rule", "outcome"))
replication_bytes = Counter("moorage_replication_bytes_total", "Blob bytes replication sent, by rule", ("rule",))
replication_lag = Histogram("moorage_replication_lag_seconds", "Time from a push here to its copy on the remote "
                            "(event rules)", ("rule",), buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
                                                                 300.0, 900.0, 3600.0))
replication_running = Gauge("moorage_replication_executions_running", "Replication executions this process runs "
                            "now, by rule", ("rule",), multiprocess_mode="livesum")
# from "on time" to "the server answered nobody for half a minute"
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
event_loop_lag = Histogram("moorage_event_loop_lag_seconds", "How late the event loop ran a timer due now "
                           "(sampled every 0.25 s per process): while it is late, no request is answered",
                           buckets=LAG_BUCKETS)
event_loop_lag_last = Gauge("moorage_event_loop_lag_last_seconds", "The latest event loop lag sample (the "
                            "largest over the live worker processes)", multiprocess_mode="livemax")
audit_events = Counter("moorage_audit_events_total", "Audit events written, by action (push, delete, mount, "
                       "refused)", ("action",))


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, added up over all workers in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class ContentMetrics:
    """Counts the repositories' events (subscribed to the event bus when metrics are on)."""

    kinds = frozenset(EventKind)

    async def on_event(self, event: RepositoryEvent) -> None:
        label = event.kind.name.lower()
        repository_events.labels(label, event.actor.kind).inc()
        if event.size:
            repository_event_bytes.labels(label).inc(event.size)
