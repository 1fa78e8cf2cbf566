"""Prometheus metrics of the storage layer: driver operations, S3 requests, database transactions, garbage
collection, quotas.

Labels stay bounded: the operation is a driver method name, the driver its kind (``filesystem``,
``s3``), a namespace the quota's configured namespace; never a path or a digest.

For garbage collection and quotas (``moorage gc``, retention, ``du``) call, from any layer:

* ``gc_finished(mode, blobs_deleted, manifests_deleted, bytes_freed, seconds, error=False)`` once per run
  (``mode``: ``gc``, ``retention``, ...), which counts the run and the bytes and objects it freed;
* ``quota_usage(namespace, used_bytes, limit_bytes)`` whenever the storage accounting of a namespace with a
  quota is known (``limit_bytes`` None for none); a gauge pair per configured namespace.

A one-shot CLI run records into its own process: scrape it through a Pushgateway, or call these from the
server's own periodic GC so that ``/metrics`` shows them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# from a local stat (~50 us) to a multi-part S3 commit
LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

driver_operations = Counter("moorage_storage_operations_total", "Storage driver calls, by driver and operation",
                            ("driver", "operation"))
driver_errors = Counter("moorage_storage_errors_total", "Storage driver calls that failed (a missing path is "
                        "not an error), by driver and operation", ("driver", "operation"))
driver_latency = Histogram("moorage_storage_operation_duration_seconds", "Time of a storage driver call (for "
                           "reads: until the first bytes)", ("driver", "operation"), buckets=LATENCY_BUCKETS)
s3_requests = Counter("moorage_s3_requests_total", "HTTP requests sent to S3 (retries included), by operation",
                      ("operation",))
# kind: ``version`` (the change feed's counter: its polls and a stale cache's check), ``read``, ``write``;
# a warm pull moves neither read nor write (the access policy is a snapshot in memory)
database_transactions = Counter("moorage_database_transactions_total", "Database transactions, by kind (version: "
                                "the change feed's polls and checks; read; write)", ("kind",))
gc_runs = Counter("moorage_gc_runs_total", "Garbage collection and retention runs, by mode and result",
                  ("mode", "result"))
gc_bytes_freed = Counter("moorage_gc_bytes_freed_total", "Bytes of blobs deleted by garbage collection", ("mode",))
gc_objects_deleted = Counter("moorage_gc_objects_deleted_total", "Blobs and manifests deleted by garbage "
                             "collection", ("mode", "kind"))
gc_duration = Histogram("moorage_gc_duration_seconds", "Time of a garbage collection run", ("mode",),
                        buckets=(0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0))
quota_used = Gauge("moorage_quota_used_bytes", "Bytes stored in a namespace that has a quota", ("namespace",),
                   multiprocess_mode="mostrecent")
quota_limit = Gauge("moorage_quota_limit_bytes", "The quota of a namespace", ("namespace",),
                    multiprocess_mode="mostrecent")


def gc_finished(mode: str, blobs_deleted: int, manifests_deleted: int, bytes_freed: int, seconds: float,
                error: bool = False) -> None:
    """Record one garbage collection (or retention) run."""
    gc_runs.labels(mode, "error" if error else "ok").inc()
    gc_bytes_freed.labels(mode).inc(bytes_freed)
    gc_objects_deleted.labels(mode, "blob").inc(blobs_deleted)
    gc_objects_deleted.labels(mode, "manifest").inc(manifests_deleted)
    gc_duration.labels(mode).observe(seconds)


def quota_usage(namespace: str, used_bytes: int, limit_bytes: int | None) -> None:
    """Record what a namespace with a configured quota uses (only configured namespaces: bounded labels)."""
    quota_used.labels(namespace).set(used_bytes)
    if limit_bytes is not None:
        quota_limit.labels(namespace).set(limit_bytes)
