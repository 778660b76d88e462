"""Settings of the modelport server: declared once here, read once, passed down.

Sources, highest precedence first: a command-line flag of ``modelport serve``, then the
``MODELPORT_<NAME>`` environment variable, then the default below. Every option is listed
with its flag and variable in ``docs/configuration.md``. This is the only module that
reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = ["ENV_MANAGERS", "MLFLOW_SCHEMA", "SETTINGS", "SettingSpec", "Settings", "env_value"]

#: Values of ``env_manager`` (the same as ``spec.endpoint.ENV_MANAGERS``, which spec cannot import).
ENV_MANAGERS = ("local", "uv")

#: The PostgreSQL schema of the embedded registry's tables, beside the store's (``public``).
MLFLOW_SCHEMA = "mlflow"


#: Name ending of the provider base URL settings.
_BASE_URL = "_base_url"
#: The URL schemes --online-store accepts (those modelport.tables.online_stores.SCHEMES opens).
_ONLINE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "redis", "rediss")


def _opt(default: Any, help: str, *, flag: bool = True, secret: bool = False, env: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag, "secret": secret, "env": env})


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know at start; immutable once built."""

    # MODELPORT_HOST is the clients' server URL, so the server's own address has other names.
    host: str = _opt("127.0.0.1", "Interface to listen on.", env="MODELPORT_SERVER_HOST")
    port: int = _opt(8080, "TCP port to listen on (0 picks a free port).", env="MODELPORT_SERVER_PORT")
    data_dir: str = _opt(
        "~/.modelport", "Directory for the metadata database, registry, artifacts, logs and tokens."
    )
    store: str = _opt(
        "",
        "Metadata store URL: empty for SQLite in the data directory, or postgresql://user@host:port/db.",
    )
    registry_uri: str = _opt(
        "",
        "MLflow tracking/registry URI: empty for the embedded registry served on the same port, "
        "or the URL of an existing MLflow server.",
    )
    artifacts_root: str = _opt(
        "",
        "Where the embedded registry keeps model artifacts: empty for <data-dir>/artifacts, or a "
        "folder every server reaches (a shared path), needed when several servers share one "
        "PostgreSQL store.",
    )
    registry_token: str = _opt(
        "", "Bearer token for an external MLflow server given by --registry-uri.", flag=False, secret=True
    )
    admin_token: str = _opt(
        "",
        "Admin token to create on first start (else one is generated and written to <data-dir>/admin-token).",
        flag=False,
        secret=True,
    )
    secrets_key: str = _opt(
        "",
        "Fernet key that encrypts secret values at rest (several, comma-separated: the first "
        "encrypts, all decrypt). Empty: a key kept in <data-dir>/secrets.key, created on first start.",
        flag=False,
        secret=True,
    )
    admin_user: str = _opt("admin", "User name of the admin principal created on first start.")
    log_level: str = _opt("info", "Log level: debug, info, warning or error.")
    log_format: str = _opt("json", "Log format: json (one object a line) or text.")
    demo: bool = _opt(False, "Register demo models and create demo endpoints on start.")
    max_concurrent_deployments: int = _opt(
        4, "How many endpoint config updates the reconciler works on at once."
    )
    request_timeout: int = _opt(120, "Seconds a query may take before it is answered 504.")
    agent_max_depth: int = _opt(
        5,
        "How deeply agents may call endpoints through each other: a tool call of an agent queried "
        "by a client is depth 1; a call deeper than this is answered 400.",
    )
    external_timeout: int = _opt(
        120,
        "Seconds an external model's provider may take to answer (or between two streamed chunks) "
        "before the query is answered 504 DEADLINE_EXCEEDED.",
    )
    max_image_bytes: int = _opt(
        20 * 1024 * 1024,
        "Largest image (bytes, once decoded) an image_url part of a chat request to an external "
        "model may hold as a data URL; a bigger one is answered 400. (A query's body is at most "
        "16 MiB, about 12 MiB of base64-encoded image.)",
    )
    max_images_per_request: int = _opt(
        20, "Most image_url parts one chat request to an external model may hold; more are answered 400."
    )
    scale_to_zero_seconds: int = _opt(
        1800, "Idle seconds after which a scale-to-zero entity stops its replicas."
    )
    replica_concurrency: int = _opt(
        4, "Concurrent requests counted per replica when sizing an entity (Small = 4 = one replica)."
    )
    replica_in_flight: int = _opt(64, "Requests one replica holds at once (its batching window).")
    replica_health_seconds: int = _opt(
        10,
        "A running replica is pinged every half of this; one that does not answer within it "
        "(stopped, hung) is killed and replaced.",
    )
    queue_limit: int = _opt(64, "Requests that may wait per served entity beyond that; more get 429.")
    shadow_max_in_flight: int = _opt(
        64,
        "Shadow copies of live queries (config.shadow) in flight at once in each server process; "
        "copies beyond are dropped and counted (0: none are sent).",
    )
    refusal_burst_quiet_seconds: float = _opt(
        30.0,
        "Rate-limit and guardrail refusals are written to the endpoint event log as one event per "
        "burst: a burst ends this many seconds after its last refusal.",
    )
    refusal_burst_max_seconds: float = _opt(
        60.0,
        "A burst of refusals open this long is written even while refusals go on (so a long storm "
        "shows as it lasts); the next refusal opens the next burst.",
    )
    max_replicas: int = _opt(8, "Upper bound on replicas per served entity on this machine.")
    batching: str = _opt(
        "auto", "Adaptive batching in replicas: auto (for flavors that can batch), on or off."
    )
    max_batch_size: int = _opt(
        1024, "Most rows one batched predict call takes (requests with more rows are predicted alone)."
    )
    max_batch_wait_ms: int = _opt(2, "Longest a replica waits to fill a batch once requests are queued.")
    env_manager: str = _opt(
        "local",
        "Where custom-model replicas run: local (the server's Python environment) or uv (a virtual "
        "environment per model, built with uv from its requirements and cached in <data-dir>/envs). "
        "A served entity's environment_vars MODELPORT_ENV_MANAGER overrides it.",
    )
    prefork: bool = _opt(
        True,
        "Start replicas by forking a process that has imported MLflow already (sub-second starts); "
        "off: a fresh interpreter for every replica.",
    )
    redis: str = _opt(
        "",
        "Redis URL (redis://host:6379/0) for counters and response caches shared by several server "
        "processes: rate limits stay exact across them and a cached answer serves every process. "
        "Empty: both in this process.",
    )
    response_cache_bytes: int = _opt(
        64 * 1024 * 1024,
        "Memory for endpoints' response caches (ai_gateway.response_cache) in this process, in bytes; "
        "the least recently used answers go first. With --redis the cache is in Redis instead, "
        "shared by every process and server.",
    )
    workers: int = _opt(
        1,
        "HTTP worker processes on the port (each with its own socket, SO_REUSEPORT). The first "
        "process also runs the reconciler and the replicas; the others answer HTTP and reach "
        "the replicas over their sockets. A dead worker is replaced. More than 1 needs --redis "
        "for rate limits (counters in one process would let N times the limit through).",
    )
    backend: str = _opt(
        "local",
        "Where replicas of custom and foundation models run: local (processes of this machine) or "
        "ray (detached actors on the Ray cluster at --ray-address, reached over TCP; docs/ray.md).",
    )
    ray_address: str = _opt(
        "",
        "The Ray cluster of --backend ray: its GCS address (HOST:6379, what `ray start --head` "
        "prints) or auto. The leader joins it as a driver: same Ray and Python versions.",
    )
    ray_namespace: str = _opt(
        "modelport",
        "Ray namespace of this deployment's replica actors (one per modelport deployment that "
        "shares a Ray cluster).",
    )
    ray_cpus_per_replica: float = _opt(
        1.0, "num_cpus each replica asks Ray for (GPU workloads also ask for their GPUs)."
    )
    leader_lease_seconds: int = _opt(
        10,
        "Seconds the leader's lease on the metadata store lasts, when several servers share one "
        "PostgreSQL store and one of them (the leader) runs the reconciler: the leader renews it "
        "every third of this and stops leading at a failed renewal or before the lease could "
        "expire; another server takes over about this long after the leader stopped renewing.",
    )
    ai_functions_endpoint: str = _opt(
        "modelport-smollm2-135m-instruct",
        "The chat endpoint that answers the SQL task functions (ai_summarize, ai_classify, ...) "
        "of the tables query route; each caller needs CAN_QUERY on it.",
        flag=False,
    )
    ai_similarity_endpoint: str = _opt(
        "modelport-all-minilm-l6-v2",
        "The embeddings endpoint that answers the SQL function ai_similarity of the tables query "
        "route; each caller needs CAN_QUERY on it.",
        flag=False,
    )
    tables_root: str = _opt(
        "",
        "Where inference and usage tables (Delta) are written: a folder or an object-store URI "
        "such as an S3 prefix. Empty: the tables folder of the data directory.",
    )
    online_store: str = _opt(
        "",
        "The online store features are published to and looked up in: a SQLite file (embedded: "
        "replicas on other machines cannot read it), postgresql://user:pass@host/db or "
        "redis://host:6379/0 (?schema= and ?prefix= say where in them). The server writes it; its "
        "lookup route, feature-spec endpoints and every replica (local or Ray, told through this "
        "same variable) read it. Empty: <data-dir>/online/features.sqlite.",
    )
    tables_flush_seconds: int = _opt(
        2,
        "How often recorded queries are written from the spool to their Delta tables (each write "
        "is a Delta commit: fewer commits cost less CPU; the spool keeps them safe meanwhile).",
    )
    tables_fsync: str = _opt(
        "never",
        "When the spool of table records is fsynced: never (a killed server loses nothing; a machine "
        "crash may lose the last records), interval (once a second) or always (every record).",
    )
    tables_memory_records: int = _opt(
        10_000,
        "Table records kept in memory while the spool's disk refuses writes (full); they are written "
        "when it has room again. Beyond them, queries to endpoints with tables are answered 503.",
    )
    metric_history_flush_seconds: float = _opt(
        10.0,
        "How often each server process writes its endpoints' metrics history (request counts, "
        "latency histogram, replicas) to the store: the history's figures of the last seconds "
        "appear this much later.",
    )
    metric_history_days: int = _opt(
        14, "Days of endpoint metrics history kept (older rows are deleted by the leader).", flag=False
    )
    metric_history_minute_hours: int = _opt(
        48,
        "Hours of endpoint metrics history kept at one-minute resolution; older minutes are "
        "summed into hours by the leader.",
        flag=False,
    )
    metric_history_downsample_seconds: float = _opt(
        300.0,
        "How often the leader turns old minute rows of the metrics history into hour rows and "
        "deletes rows past the retention.",
        flag=False,
    )
    system_endpoints: bool = _opt(
        True,
        "Create the system endpoints (a small chat LLM and an embedding model) at start-up when "
        "their models are installed (the llm extra).",
    )
    tls_certfile: str = _opt(
        "", "PEM certificate file: serve HTTPS instead of plain HTTP (with --tls-keyfile)."
    )
    tls_keyfile: str = _opt("", "PEM private-key file for --tls-certfile.")
    # Hardening: what a client may send, and who may read /metrics (docs/security.md).
    public_metrics: bool = _opt(
        False,
        "Serve /metrics without a token. Off: /metrics needs a valid token of any principal "
        "(give Prometheus a service principal's token).",
    )
    trusted_proxies: str = _opt(
        "",
        "Comma-separated addresses (or *) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers name the client and scheme. Empty: none; the connection's peer "
        "is the client.",
    )
    session_hours: int = _opt(
        12,
        "Lifetime of a browser sign-in (the UI's and MLflow UI's session cookie), in hours; a "
        "session never outlives the token signed in with.",
    )
    auth_failure_limit: int = _opt(
        20,
        "Failed authentications (401) one client address may have within --auth-failure-window "
        "seconds; beyond them every request from that address is answered 429 until the window "
        "ends. 0: no limit.",
    )
    auth_failure_window: int = _opt(
        60, "Seconds over which --auth-failure-limit counts failed authentications."
    )
    max_body_mb: int = _opt(
        4,
        "Largest request body, in MiB, of a control-plane request (serving endpoints, permissions, "
        "secrets, tokens, SCIM, tables); queries and MLflow API calls may send 16 MiB.",
    )
    max_upload_mb: int = _opt(
        10240, "Largest artifact, in MiB, uploaded through the MLflow artifact proxy. 0: no limit."
    )
    max_header_kb: int = _opt(32, "Largest request line and headers of a request, in KiB (larger: 431).")
    max_headers: int = _opt(100, "Most header fields a request may have (more: 431).")
    # Foundation-model engines: a served entity's environment_vars override these per entity.
    llm_parallel: int = _opt(
        4,
        "Sequences one llama.cpp replica decodes together: its share of an endpoint's concurrency. "
        "A served entity's environment_vars MODELPORT_LLM_PARALLEL overrides it.",
    )
    llm_context: int = _opt(
        2048,
        "Tokens per sequence (prompt and answer) of a llama.cpp replica, at most what the model was "
        "trained on. A served entity's environment_vars MODELPORT_LLM_CONTEXT overrides it.",
    )
    llm_threads: int = _opt(
        0,
        "Compute threads of a llama.cpp replica; 0: half the cores it may run on. A served entity's "
        "environment_vars MODELPORT_LLM_THREADS overrides it (for embedding models too).",
    )
    embed_threads: int = _opt(
        0,
        "Compute threads of an embedding-model replica (onnxruntime, sentence-transformers); "
        "0: half the cores it may run on.",
    )
    # Where external providers' APIs are, for a proxy or a test double (every endpoint).
    openai_base_url: str = _opt(
        "",
        "Base URL of the OpenAI API where an openai_config has no openai_api_base. "
        "Empty: https://api.openai.com/v1.",
        flag=False,
    )
    entra_base_url: str = _opt(
        "",
        "Microsoft Entra host that issues tokens for openai_config's microsoft_entra_* client "
        "credentials. Empty: https://login.microsoftonline.com.",
        flag=False,
    )
    anthropic_base_url: str = _opt(
        "", "Base URL of the Anthropic API. Empty: https://api.anthropic.com.", flag=False
    )
    bedrock_base_url: str = _opt(
        "",
        "URL in place of every Amazon Bedrock runtime endpoint. "
        "Empty: https://bedrock-runtime.<aws_region>.amazonaws.com.",
        flag=False,
    )
    cohere_base_url: str = _opt(
        "",
        "Base URL of the Cohere API where a cohere_config has no cohere_api_base. "
        "Empty: https://api.cohere.com.",
        flag=False,
    )
    vertex_base_url: str = _opt(
        "",
        "URL in place of the Vertex AI endpoint. Empty: https://<region>-aiplatform.googleapis.com "
        "(https://aiplatform.googleapis.com for region global).",
        flag=False,
    )
    palm_base_url: str = _opt(
        "",
        "Base URL of the Gemini API that serves the palm provider. "
        "Empty: https://generativelanguage.googleapis.com.",
        flag=False,
    )
    ai21_base_url: str = _opt("", "Base URL of the AI21 API. Empty: https://api.ai21.com.", flag=False)

    def __post_init__(self) -> None:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("--tls-certfile and --tls-keyfile go together; give both or neither.")
        if self.batching not in ("auto", "on", "off"):
            raise ValueError(f"--batching must be auto, on or off, not {self.batching!r}.")
        if self.log_format not in ("json", "text"):
            raise ValueError(f"--log-format must be json or text, not {self.log_format!r}.")
        if self.metric_history_flush_seconds <= 0 or self.metric_history_downsample_seconds <= 0:
            raise ValueError("--metric-history-flush-seconds and the downsampling interval must be positive.")
        days, hours = self.metric_history_days, self.metric_history_minute_hours
        if days < 1 or not 1 <= hours <= 24 * days:
            raise ValueError(
                "metric_history_days must be at least 1, metric_history_minute_hours 1 to 24 x days."
            )
        if self.tables_flush_seconds < 1:
            raise ValueError(f"--tables-flush-seconds must be at least 1, not {self.tables_flush_seconds}.")
        if self.tables_fsync not in ("never", "interval", "always"):
            raise ValueError(f"--tables-fsync must be never, interval or always, not {self.tables_fsync!r}.")
        if self.replica_health_seconds < 1 or self.tables_memory_records < 0:
            raise ValueError(
                "--replica-health-seconds must be at least 1, --tables-memory-records 0 or more."
            )
        if self.env_manager not in ENV_MANAGERS:
            raise ValueError(f"--env-manager must be local or uv, not {self.env_manager!r}.")
        if self.llm_parallel < 1:
            raise ValueError(f"--llm-parallel must be at least 1, not {self.llm_parallel}.")
        if self.agent_max_depth < 1:
            raise ValueError(f"--agent-max-depth must be at least 1, not {self.agent_max_depth}.")
        if self.llm_context < 16:
            raise ValueError(f"--llm-context must be at least 16, not {self.llm_context}.")
        if min(self.auth_failure_limit, self.max_upload_mb) < 0 or self.auth_failure_window < 1:
            raise ValueError(
                "--auth-failure-limit and --max-upload-mb must be 0 (off) or more, "
                "--auth-failure-window at least 1."
            )
        if min(self.max_body_mb, self.max_header_kb, self.max_headers) < 1:
            raise ValueError("--max-body-mb, --max-header-kb and --max-headers must be at least 1.")
        if not 1 <= self.session_hours <= 24 * 365:
            raise ValueError(f"--session-hours must be 1 to 8760, not {self.session_hours}.")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"--workers must be 1 to 64, not {self.workers}.")
        if self.workers > 1 and not self.redis:
            raise ValueError(
                "--workers above 1 needs --redis: rate limits counted in each process would let "
                f"{self.workers} times the limit through."
            )
        if "://" in self.online_store and self.online_store.split("://", 1)[0].lower() not in _ONLINE_SCHEMES:
            raise ValueError(
                "--online-store must be a file path, a postgresql:// URL or a redis:// URL, not "
                f"a {self.online_store.split('://', 1)[0]}:// URL."
            )
        if self.backend not in ("local", "ray"):
            raise ValueError(f"--backend must be local or ray, not {self.backend!r}.")
        if self.backend == "ray" and not self.ray_address:
            raise ValueError("--backend ray needs --ray-address (the cluster's HOST:PORT, or auto).")
        if self.ray_cpus_per_replica < 0:
            raise ValueError(f"--ray-cpus-per-replica must be 0 or more, not {self.ray_cpus_per_replica}.")
        if self.leader_lease_seconds < 1:
            raise ValueError(f"--leader-lease-seconds must be at least 1, not {self.leader_lease_seconds}.")
        if self.refusal_burst_quiet_seconds <= 0 or self.refusal_burst_max_seconds <= 0:
            raise ValueError("--refusal-burst-quiet-seconds and --refusal-burst-max-seconds must be above 0.")
        if self.shadow_max_in_flight < 0:
            raise ValueError(f"--shadow-max-in-flight must be 0 or more, not {self.shadow_max_in_flight}.")
        if self.llm_threads < 0 or self.embed_threads < 0:
            raise ValueError("--llm-threads and --embed-threads must be 0 (half the cores) or more.")
        if self.max_image_bytes < 1 or self.max_images_per_request < 0:
            raise ValueError("--max-image-bytes must be at least 1, --max-images-per-request 0 or more.")

    # ---- derived values -------------------------------------------------------------
    @property
    def provider_base_urls(self) -> dict[str, str]:
        """The provider base URLs that are set, by provider name: ``{"openai": ...}`` for
        ``openai_base_url`` (``ProviderContext.base_url`` reads them)."""
        return {
            f.name.removesuffix(_BASE_URL): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name.endswith(_BASE_URL) and getattr(self, f.name)
        }

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def store_url(self) -> str:
        if self.store:
            return self.store
        return f"sqlite:///{self.data_path / 'modelport.db'}"

    @property
    def embedded_registry(self) -> bool:
        return not self.registry_uri

    @property
    def store_is_postgresql(self) -> bool:
        return self.store.startswith(("postgresql:", "postgresql+", "postgres:"))

    @property
    def mlflow_sqlite_uri(self) -> str:
        """The embedded registry's SQLite database in the data directory (``mlflow.db``)."""
        return f"sqlite:///{self.data_path / 'mlflow.db'}"

    @property
    def mlflow_backend_uri(self) -> str:
        """Where the embedded MLflow tracking server keeps its metadata: with a PostgreSQL store,
        that database's schema ``mlflow`` (chosen by the connection's ``search_path``, so that
        MLflow's tables and its own ``alembic_version`` never meet modelport's, in ``public``),
        through psycopg 3 like the store; else ``<data-dir>/mlflow.db``."""
        if not self.store_is_postgresql:
            return self.mlflow_sqlite_uri
        scheme, rest = self.store.split(":", 1)
        if scheme in ("postgresql", "postgres"):
            scheme = "postgresql+psycopg"
        parts = urlsplit(f"{scheme}:{rest}")
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
        # Other ``-c`` options of the store's URL are kept; a search_path of its own is replaced.
        options = " ".join(v for k, v in parse_qsl(parts.query) if k == "options")
        options = re.sub(r"-c\s*search_path=\S*", "", options).strip()
        query.append(("options", f"{options} -csearch_path={MLFLOW_SCHEMA}".strip()))
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    @property
    def artifacts_path(self) -> Path:
        if self.artifacts_root:
            return Path(self.artifacts_root).expanduser().resolve()
        return self.data_path / "artifacts"

    @property
    def logs_path(self) -> Path:
        return self.data_path / "logs"

    @property
    def run_path(self) -> Path:
        """Sockets of running replicas (emptied at every start). Unix socket paths are limited to
        about 100 bytes, so this is a short folder in the temp directory, one per data directory."""
        digest = hashlib.sha1(str(self.data_path).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"modelport-{digest}"

    @property
    def tables_location(self) -> str:
        return self.tables_root or str(self.data_path / "tables")

    @property
    def online_store_location(self) -> str:
        """The online store (``MODELPORT_ONLINE_STORE`` in every replica): a postgresql:// or
        redis:// URL as given, or the embedded store's file as an absolute path."""
        if "://" in self.online_store:
            return self.online_store
        if self.online_store:
            return str(Path(self.online_store).expanduser().resolve())
        return str(self.data_path / "online" / "features.sqlite")

    @property
    def online_store_path(self) -> str:
        """:attr:`online_store_location` (the name is older than the URL locations)."""
        return self.online_store_location

    @property
    def spool_path(self) -> Path:
        """Records of answered queries not yet in their Delta tables (replayed at start)."""
        return self.data_path / "spool"

    def worker_spool_path(self, index: int) -> Path:
        """The spool of HTTP worker ``index`` of ``--workers N`` (1 to N-1; the server process
        has :attr:`spool_path`); the worker that replaces a dead one replays it."""
        return self.data_path / "spool-workers" / str(index)

    @property
    def models_path(self) -> Path:
        """Local copies of models from a remote registry."""
        return self.data_path / "models"

    @property
    def envs_path(self) -> Path:
        """Per-model virtual environments (``env_manager`` uv), one folder per requirements hash."""
        return self.data_path / "envs"

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, for logging."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = _without_password(value)
            out[f.name] = value
        return out

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: ``overrides`` (flags; None values ignored) over env over defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = env.get(spec.env_var)
            if raw is not None and raw != "":
                values[spec.name] = spec.parse(raw)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        return cls(**values)


def _without_password(url: str) -> str:
    """``url`` with its password (a store's, Redis') replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True)
class SettingSpec:
    """One option: its name, type, default, help text and environment variable."""

    name: str
    type: type
    default: Any
    help: str
    flag: bool
    secret: bool
    env: str | None = None

    @property
    def env_var(self) -> str:
        return self.env or "MODELPORT_" + self.name.upper()

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if self.type is int:
            return int(raw)
        if self.type is float:
            return float(raw)
        return raw


_TYPES = {"str": str, "int": int, "bool": bool, "float": float}
SETTINGS: tuple[SettingSpec, ...] = tuple(
    SettingSpec(
        name=f.name,
        type=_TYPES[f.type] if isinstance(f.type, str) else f.type,  # type: ignore[index]
        default=f.default,
        help=f.metadata["help"],
        flag=f.metadata["flag"],
        secret=f.metadata["secret"],
        env=f.metadata["env"],
    )
    for f in dataclasses.fields(Settings)
)


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Read one client-side variable (``MODELPORT_HOST``, ``MODELPORT_TOKEN``, ...)."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value if value else None


_NOT_INHERITED = (
    "MODELPORT_ADMIN_TOKEN",
    "MODELPORT_TOKEN",
    "MODELPORT_REGISTRY_TOKEN",
    "MODELPORT_SECRETS_KEY",
)


def inherited_environment() -> dict[str, str]:
    """The environment replica processes start from: the server's, without modelport's secrets."""
    return {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
