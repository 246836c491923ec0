"""Scale-out on existing engines: captures on a Dask cluster (:mod:`sluice.cluster.run`).

The register's distribution to many gateways lives beside the register
(:mod:`sluice.registry.notify`, :mod:`sluice.registry.snapshot`); the decision stream through
NATS JetStream in :mod:`sluice.cluster.stream` (``sluice publish``, ``sluice collect``), stored
by :mod:`sluice.cluster.sinks` (a Parquet directory or PostgreSQL).
"""

from sluice.cluster.run import (
    SHARD_BYTES,
    ClusterRun,
    Shard,
    analyze_on_cluster,
    flows_on_cluster,
    open_client,
    plan_shards,
)

__all__ = [
    "SHARD_BYTES",
    "ClusterRun",
    "Shard",
    "analyze_on_cluster",
    "flows_on_cluster",
    "open_client",
    "plan_shards",
]
