"""The tables of the metadata store. Changing them needs a migration in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

principals = Table(
    "principals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # user | service_principal | group
    Column("display_name", String(255), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_ms", BigInteger, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    Column("member_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("comment", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("expiry_ms", BigInteger, nullable=True),
    Column("created_by", String(255), nullable=True),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("creator", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("description", Text, nullable=True),
    Column("route_optimized", Boolean, nullable=False, default=False),
    Column("budget_policy_id", String(255), nullable=True),
    Column("task", String(64), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("ai_gateway", JSON, nullable=True),
    Column("rate_limits", JSON, nullable=True),
    Column("email_notifications", JSON, nullable=True),
    Column("telemetry_config", JSON, nullable=True),
    Column("config_update", String(32), nullable=False),
    Column("active_version", Integer, nullable=True),
    Column("pending_version", Integer, nullable=True),
    # The rollout in progress as the query path needs it (control/rollouts.py writes it, the
    # routing table reads it): its id, step, candidate and the traffic of the step; None when none.
    Column("rollout", JSON, nullable=True),
)

endpoint_configs = Table(
    "endpoint_configs",
    metadata,
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", JSON, nullable=False),
    # PENDING | ACTIVE | FAILED | CANCELED | SUPERSEDED
    Column("status", String(32), nullable=False),
    Column("message", Text, nullable=True),
    Column("creator", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    # The AI-gateway settings in effect with this version (kept current while it serves).
    Column("ai_gateway", JSON, nullable=True),
)

endpoint_acl = Table(
    "endpoint_acl",
    metadata,
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    Column("level", Integer, nullable=False),
)

secret_scopes = Table(
    "secret_scopes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("creator", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

secrets = Table(
    "secrets",
    metadata,
    Column("scope", String(128), ForeignKey("secret_scopes.name", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    # A Fernet token (control/cipher.py); the plain value is never stored.
    Column("value", LargeBinary, nullable=False),
    Column("last_updated_ms", BigInteger, nullable=False),
)

secret_acls = Table(
    "secret_acls",
    metadata,
    Column("scope", String(128), ForeignKey("secret_scopes.name", ondelete="CASCADE"), primary_key=True),
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    Column("permission", Integer, nullable=False),  # 1 READ, 2 WRITE, 3 MANAGE
)

# Grants on objects other than endpoints and secret scopes: registered models and
# experiments of the embedded MLflow registry, Delta tables. One row per principal and
# object; ``level`` is 1 read (CAN_READ / SELECT), 2 edit (CAN_EDIT / MODIFY), 3 manage.
object_acl = Table(
    "object_acl",
    metadata,
    Column("object_type", String(32), primary_key=True),  # registered-model | experiment | table
    Column("object_id", String(512), primary_key=True),
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    Column("level", Integer, nullable=False),
    Index("ix_object_acl_principal", "principal_id", "object_type"),
)

# The content digest of each registered model version's artifacts, recorded when the
# version became READY; a replica refuses to load artifacts that no longer match.
model_version_digests = Table(
    "model_version_digests",
    metadata,
    Column("model_name", String(512), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(80), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Leases (store/leases.py): one row per lease name ('reconciler'); the holder is one server
# process, the epoch grows with every new tenure and is the fencing token that the holder's
# writes carry. Times are the database's clock, never a server's. The unique constraint on
# (name, epoch) is redundant as a constraint: it makes ``epoch`` a key column for PostgreSQL's
# row locks, so a takeover (which changes the epoch) waits for a fenced transaction's
# FOR KEY SHARE lock while a renewal (which does not) passes it.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("acquired_ms", BigInteger, nullable=False),
    Column("renewed_ms", BigInteger, nullable=False),
    UniqueConstraint("name", "epoch", name="uq_leases_name_epoch"),
)

# The change counter (store/changes.py): one row, bumped in the same transaction as every
# control-plane write, so that every server process can tell with one cheap read whether
# anything changed since it last looked.
store_changes = Table(
    "store_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# The replica registry (store/replicas.py): where the leader's replicas listen, so that every
# server process (HTTP workers, other servers on the machine) can reach them. Written by the
# leader only, each write fenced by its lease epoch; ``host`` names the machine whose unix
# socket ``address`` is.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("endpoint_id", String(64), nullable=False),
    Column("config_version", Integer, nullable=False),
    Column("entity", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("address", String(1024), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_replicas_endpoint", "endpoint_id", "config_version", "entity"),
)

# Wake requests: a process that is not the leader got a query for a served entity scaled to
# zero; the leader starts a replica and deletes the row (store/replicas.py).
replica_wakes = Table(
    "replica_wakes",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("config_version", Integer, primary_key=True),
    Column("entity", String(255), primary_key=True),
    Column("requested_ms", BigInteger, nullable=False),
)

# The server processes that share the store (store/processes.py): each writes its row every
# few seconds (``seen_ms``, the database's clock); ``modelport status`` lists them.
processes = Table(
    "processes",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("worker", Integer, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("seen_ms", BigInteger, nullable=False),
)

# The endpoint event log (store/events.py): config updates, rollout decisions, replicas started,
# stopped, crashed and scaled, cold starts; read paged, newest first, by
# ``GET /api/2.0/serving-endpoints/{name}/events``.
endpoint_events = Table(
    "endpoint_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("actor", String(255), nullable=True),
    Column("config_version", Integer, nullable=True),
    Column("served_entity", String(255), nullable=True),
    Column("details", JSON, nullable=True),
    Index("ix_endpoint_events_endpoint", "endpoint_id", "id"),
)

# Rollouts (store/rollouts.py): a config update with a rollout policy moves traffic to its
# candidate step by step; the leader evaluates each step and promotes or rolls back.
endpoint_rollouts = Table(
    "endpoint_rollouts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("config_version", Integer, nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("policy", JSON, nullable=False),
    Column("candidate", String(255), nullable=False),
    Column("incumbents", JSON, nullable=False),
    # WAITING (the config deploys) | RUNNING | PAUSED | SUCCEEDED | ROLLED_BACK | CANCELED | FAILED
    Column("state", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("step_started_ms", BigInteger, nullable=True),
    Column("creator", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger, nullable=True),
    Column("message", Text, nullable=True),
    Column("last_evaluation", JSON, nullable=True),
    Index("ix_endpoint_rollouts_endpoint", "endpoint_id", "created_ms"),
)

# What each server process saw of a rollout step's traffic (store/rollouts.py): one row per
# process and served entity, rewritten every second; the leader sums them to decide.
rollout_tallies = Table(
    "rollout_tallies",
    metadata,
    Column(
        "rollout_id", String(32), ForeignKey("endpoint_rollouts.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("step", Integer, primary_key=True),
    Column("process", String(255), primary_key=True),
    Column("entity", String(255), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    # Latency histogram: {"bounds_ms": [...], "counts": [...]} (one more count than bounds).
    Column("latency", JSON, nullable=False),
    Column("compared", BigInteger, nullable=False),
    Column("agreed", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Replays (store/replays.py): logged requests of an inference table sent again to a candidate
# served entity, at a bounded rate, by the leader; the report compares the answers.
endpoint_replays = Table(
    "endpoint_replays",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("candidate", String(255), nullable=False),
    Column("spec", JSON, nullable=False),
    # QUEUED | RUNNING | SUCCEEDED | FAILED | CANCELED
    Column("state", String(32), nullable=False),
    Column("progress", JSON, nullable=True),
    Column("report", JSON, nullable=True),
    Column("message", Text, nullable=True),
    Column("creator", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_endpoint_replays_endpoint", "endpoint_id", "created_ms"),
)

# Metrics history (store/metric_history.py): per endpoint, served entity and period, the request
# counts, latency histogram and replicas; minute rows (step_s 60) are each server process's own
# (``process``), hour rows (step_s 3600, process "") the leader's sums of them after 48 hours.
metric_history = Table(
    "metric_history",
    metadata,
    Column("endpoint_id", String(32), ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    Column("served_entity", String(255), primary_key=True),
    Column("step_s", Integer, primary_key=True),
    Column("start_ms", BigInteger, primary_key=True),
    Column("process", String(255), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors_4xx", BigInteger, nullable=False),
    Column("errors_5xx", BigInteger, nullable=False),
    Column("statuses", JSON, nullable=False),  # {"200": n, "404": m, ...}
    Column("latency_counts", JSON, nullable=False),  # per bucket of metrics._LATENCY_BUCKETS, +Inf last
    Column("latency_sum_s", Float, nullable=False),
    Column("replicas", Float, nullable=True),  # most ready replicas seen in the period
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_metric_history_range", "endpoint_id", "start_ms"),
    Index("ix_metric_history_age", "step_s", "start_ms"),
)
