"""The comparison report of a candidate served entity against live traffic, from the endpoint's
inference table (``GET /api/2.0/modelport/serving-endpoints/{name}/compare``).

Pairs are two rows of the inference table answering one request:

- source ``shadow``: a live row (``shadow_of`` and ``replay_of`` null) and a shadow copy of it
  (``shadow_of`` = the live row's ``databricks_request_id``); the candidate is the shadow's
  served entity, or (a canary's copy to an incumbent) the live row's, the copy then being the
  incumbent's answer. Pairs are those whose live row falls in the time window.
- source ``replay``: a replayed row (``replay_of`` set, served by the candidate, of one replay
  when ``replay_id`` is given: its ``request_metadata["replay_id"]``) and the logged row it
  replays. The window applies to the replayed rows; when a logged row was replayed more than
  once, its newest replay counts.

The report (``summarize``): ``kind`` (``labels``, ``numbers`` or ``text``: the live answers'
most common kind), ``pairs``, ``compared`` (pairs where both answered 200 with a whole JSON
body), ``agreement`` (the share of compared pairs that agree: ``monitoring/agreement.py``),
``correlation`` (numbers: Pearson over the paired numeric values), ``similarity`` and
``similarity_method`` (text: ``embedding`` through the system embeddings endpoint when it
serves, else ``jaccard``) and ``length`` (text: mean characters), and per side (``live`` and
``candidate_stats``: ``candidate`` is the candidate's name) ``requests``, ``errors``,
``error_rate``, ``p50_ms``, ``p99_ms``. Only the columns needed are read, the time
filter (and the ``date`` partition) in the scan; at most :data:`MAX_PAIRS` pairs, the newest.

Permissions: CAN_VIEW on the endpoint and SELECT on its inference table.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable

from modelport.clock import now_ms
from modelport.control.endpoints import EndpointService
from modelport.control.table_acl import TableAccess, inference_table_of
from modelport.errors import InvalidParameterValue, InvalidState
from modelport.monitoring.agreement import (
    DEFAULT_TOLERANCE,
    Embed,
    agree,
    answer_kind,
    answer_text,
    numbers,
    pearson,
    similarity,
)
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database
from modelport.store.records import ConfigRecord, EndpointRecord
from modelport.tables.names import split_name, table_uri

__all__ = [
    "DEFAULT_WINDOW_MS",
    "MAX_PAIRS",
    "SOURCES",
    "ComparisonService",
    "Row",
    "all_of",
    "inference_table",
    "parse_time",
    "read_rows",
    "replay_pairs",
    "replay_rows",
    "served_names",
    "shadow_pairs",
    "summarize",
    "time_window",
]

#: The window of a report without ``since``: the last 24 hours.
DEFAULT_WINDOW_MS = 24 * 3600 * 1000
#: Most pairs one report reads (the newest).
MAX_PAIRS = 50_000
#: Most pairs of texts embedded for one report's similarity (the newest).
SIMILARITY_PAIRS = 500
#: How long after its live row a shadow copy may be recorded (its timeout, and some).
SHADOW_LAG_MS = 10 * 60 * 1000
SOURCES = ("shadow", "replay")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_COLUMNS = [
    "databricks_request_id",
    "timestamp_ms",
    "status_code",
    "execution_time_ms",
    "served_entity_name",
    "response",
]


@dataclass(frozen=True, slots=True)
class Row:
    """One inference row, as much of it as a comparison reads."""

    id: str
    timestamp_ms: int
    status: int
    latency_ms: int
    served: str | None
    response: str | None
    #: ``shadow_of`` or ``replay_of``: the request id of the row it answers again.
    of: str | None = None


def parse_time(value: Any, now: int, field: str) -> int | None:
    """Epoch milliseconds of ``value``: ISO-8601 (UTC unless it says), epoch milliseconds, or a
    time ago (``30m``, ``1h``, ``2d``, ``90s``, ``1w``); None for none. 400 naming ``field``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidParameterValue(f"Invalid value for '{field}': {value!r} is not a time.")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    relative = _RELATIVE.match(text)
    if relative:
        return now - int(float(relative.group(1)) * _UNIT_MS[relative.group(2)])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterValue(
            f"Invalid value for '{field}': {text!r} is not a time (ISO-8601 such as "
            "2026-12-07T09:00:00Z, epoch milliseconds, or a time ago such as 30m, 1h, 2d)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def inference_table(endpoint: EndpointRecord, config: ConfigRecord | None) -> str | None:
    """The inference table the endpoint's queries are recorded in (as the data plane picks it:
    ``ai_gateway.inference_table_config``, else the serving config's ``auto_capture_config``)."""
    names = inference_table_of(endpoint, [])
    if not names and config is not None:
        names = inference_table_of(replace(endpoint, ai_gateway=None), [config])
    return min(names) if names else None


def served_names(config: ConfigRecord | None) -> list[str]:
    """The served entities of a config, by name."""
    body = config.body if config is not None else {}
    return [str(e.get("name")) for e in body.get("served_entities") or []]


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def time_window(since_ms: int | None, until_ms: int | None) -> pads.Expression | None:
    """The time filter of a scan, with its ``date`` partitions (files outside are not read)."""
    parts: list[pads.Expression] = []
    if since_ms is not None:
        parts.append(pc.field("timestamp_ms") >= since_ms)
        parts.append(pc.field("date") >= pa.scalar(_day(since_ms), pa.date32()))
    if until_ms is not None:
        parts.append(pc.field("timestamp_ms") < until_ms)
        parts.append(pc.field("date") <= pa.scalar(_day(until_ms), pa.date32()))
    return all_of(parts)


def all_of(parts: list[pads.Expression | None]) -> pads.Expression | None:
    out: pads.Expression | None = None
    for p in parts:
        if p is not None:
            out = p if out is None else out & p
    return out


def read_rows(uri: str, columns: list[str], where: pads.Expression | None) -> pa.Table:
    """Columns of the Delta table at ``uri`` filtered in the scan (empty before its first row)."""
    if not DeltaTable.is_deltatable(uri):
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    have = set(dataset.schema.names)
    missing = [c for c in columns if c not in have]
    if missing:  # a table written before these columns existed: none of its rows is a copy
        if {"shadow_of", "replay_of"} & set(missing):
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        raise InvalidState(f"The inference table has no column {missing[0]!r}.")
    return dataset.to_table(columns=columns, filter=where)


def _rows(table: pa.Table, of: str | None = None) -> list[Row]:
    data = table.to_pydict()
    n = table.num_rows
    return [
        Row(
            id=data["databricks_request_id"][i],
            timestamp_ms=data["timestamp_ms"][i] or 0,
            status=data["status_code"][i] or 0,
            latency_ms=data["execution_time_ms"][i] or 0,
            served=data["served_entity_name"][i],
            response=data["response"][i],
            of=data[of][i] if of else None,
        )
        for i in range(n)
    ]


def shadow_pairs(
    uri: str, candidate: str, since_ms: int | None, until_ms: int | None
) -> list[tuple[Row, Row]]:
    """(live answer, candidate answer) of each live query in the window copied to or from the
    candidate (see the module docstring)."""
    shadow_until = None if until_ms is None else until_ms + SHADOW_LAG_MS
    copies = _rows(
        read_rows(
            uri,
            [*_COLUMNS, "shadow_of"],
            all_of([pc.field("shadow_of").is_valid(), time_window(since_ms, shadow_until)]),
        ),
        of="shadow_of",
    )
    if not copies:
        return []
    ids = pa.array(sorted({c.of for c in copies if c.of}), pa.string())
    live_filter = all_of(
        [
            pc.field("shadow_of").is_null(),
            pc.field("replay_of").is_null(),
            pc.field("databricks_request_id").isin(ids),
            time_window(since_ms, until_ms),
        ]
    )
    lives = {r.id: r for r in _rows(read_rows(uri, [*_COLUMNS, "shadow_of", "replay_of"], live_filter))}
    pairs: list[tuple[Row, Row]] = []
    for copy in copies:
        live = lives.get(copy.of or "")
        if live is None:
            continue
        if copy.served == candidate and live.served != candidate:
            pairs.append((live, copy))
        elif live.served == candidate and copy.served != candidate:
            pairs.append((copy, live))  # a canary's copy to an incumbent
    pairs.sort(key=lambda p: p[0].timestamp_ms)
    return pairs[-MAX_PAIRS:]


def replay_rows(
    uri: str, candidate: str, since_ms: int | None, until_ms: int | None, replay_id: str | None
) -> list[Row]:
    """The replayed rows answered by the candidate in the window (of one replay when given)."""
    table = read_rows(
        uri,
        [*_COLUMNS, "replay_of", "request_metadata"],
        all_of(
            [
                pc.field("replay_of").is_valid(),
                pc.field("served_entity_name") == candidate,
                time_window(since_ms, until_ms),
            ]
        ),
    )
    if replay_id is not None and table.num_rows:
        metadata = table.column("request_metadata").to_pylist()
        keep = [dict(m or []).get("replay_id") == replay_id for m in metadata]
        table = table.filter(pa.array(keep, pa.bool_()))
    newest: dict[str, Row] = {}
    for row in _rows(table.drop_columns(["request_metadata"]), of="replay_of"):
        seen = newest.get(row.of or "")
        if seen is None or row.timestamp_ms >= seen.timestamp_ms:
            newest[row.of or ""] = row
    return sorted(newest.values(), key=lambda r: r.timestamp_ms)[-MAX_PAIRS:]


def replay_pairs(
    uri: str, candidate: str, since_ms: int | None, until_ms: int | None, replay_id: str | None
) -> list[tuple[Row, Row]]:
    """(logged answer, replayed answer) of each replayed row (see the module docstring)."""
    replays = replay_rows(uri, candidate, since_ms, until_ms, replay_id)
    if not replays:
        return []
    ids = pa.array(sorted({r.of for r in replays if r.of}), pa.string())
    first = min(r.timestamp_ms for r in replays)
    logged_filter = all_of(
        [
            pc.field("databricks_request_id").isin(ids),
            pc.field("replay_of").is_null(),
            time_window(None, first + 1),
        ]
    )
    logged = {r.id: r for r in _rows(read_rows(uri, [*_COLUMNS, "replay_of"], logged_filter))}
    return [(logged[r.of], r) for r in replays if r.of in logged]


def _percentile(values: list[int], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def _stats(rows: list[Row]) -> dict[str, Any]:
    errors = sum(1 for r in rows if r.status >= 400 or r.status == 0)
    latencies = [r.latency_ms for r in rows]
    return {
        "requests": len(rows),
        "errors": errors,
        "error_rate": errors / len(rows) if rows else None,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _decode(row: Row) -> Any:
    if row.status != 200 or not row.response:
        return None
    try:
        return orjson.loads(row.response)
    except orjson.JSONDecodeError:  # cut at the table's 1 MB limit, or not JSON
        return None


def _mean(values: list[int]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def summarize(
    pairs: list[tuple[Row, Row]], *, embed: Embed | None = None, tolerance: float = DEFAULT_TOLERANCE
) -> dict[str, Any]:
    """The measures of a report over ``pairs`` of (live answer, candidate answer)."""
    decoded = [(_decode(a), _decode(b)) for a, b in pairs]
    compared = [(a, b) for a, b in decoded if a is not None and b is not None]
    kinds = Counter(answer_kind(a) for a, _ in compared)
    kind = kinds.most_common(1)[0][0] if kinds else None
    agreed = sum(1 for a, b in compared if agree(a, b, tolerance))
    out: dict[str, Any] = {
        "kind": kind,
        "pairs": len(pairs),
        "compared": len(compared),
        "agreement": agreed / len(compared) if compared else None,
        "correlation": None,
        "similarity": None,
        "similarity_method": None,
        "length": None,
        "live": _stats([a for a, _ in pairs]),
        "candidate_stats": _stats([b for _, b in pairs]),
    }
    if kind == "numbers":
        xs: list[float] = []
        ys: list[float] = []
        for a, b in compared:
            na, nb = numbers(a), numbers(b)
            if len(na) == len(nb):
                xs.extend(na)
                ys.extend(nb)
        out["correlation"] = pearson(xs, ys)
    elif kind == "text":
        texts = [(answer_text(a), answer_text(b)) for a, b in compared]
        both = [(ta, tb) for ta, tb in texts if ta is not None and tb is not None]
        score, method = similarity(both[-SIMILARITY_PAIRS:], embed)
        out["similarity"], out["similarity_method"] = score, method
        out["length"] = {
            "live": _mean([len(ta) for ta, _ in both]),
            "candidate": _mean([len(tb) for _, tb in both]),
        }
    return out


class ComparisonService:
    """Builds comparison reports (blocking: a scan of the inference table; call from a thread).

    ``embed``: texts to vectors through the system embeddings endpoint (None, or one that
    raises: similarity falls back to token sets)."""

    def __init__(
        self, db: Database, endpoints: EndpointService, tables_root: str, embed: Embed | None = None
    ) -> None:
        self._db = db
        self._endpoints = endpoints
        self.root = tables_root
        self.embed = embed

    def table_of(self, caller: Caller | None, endpoint: EndpointRecord, config: ConfigRecord | None) -> str:
        """The endpoint's inference table (400 when it records none); SELECT checked for ``caller``."""
        name = inference_table(endpoint, config)
        if name is None:
            raise InvalidParameterValue(
                f"Endpoint '{endpoint.name}' has no inference table: enable "
                "ai_gateway.inference_table_config to compare or replay its traffic."
            )
        if caller is not None:
            TableAccess(self._db, self.root).require(caller, name, TablePrivilege.SELECT)
        return name

    def report(self, caller: Caller, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The report the compare route answers (``params``: its query parameters). CAN_VIEW is
        checked first, then the parameters, then SELECT on the inference table."""
        endpoint, config = self._endpoints.snapshot(caller, name)  # CAN_VIEW
        candidate = params.get("candidate")
        if not isinstance(candidate, str) or not candidate:
            raise InvalidParameterValue(
                "Missing required parameter 'candidate': the served entity to compare."
            )
        source = params.get("source") or "shadow"
        if source not in SOURCES:
            raise InvalidParameterValue(f"Invalid value for 'source': {source!r} (shadow or replay).")
        now = now_ms()
        replay_id = params.get("replay_id") or None
        if replay_id is not None and source != "replay":
            raise InvalidParameterValue("'replay_id' needs 'source=replay'.")
        since = parse_time(params.get("since"), now, "since")
        until = parse_time(params.get("until"), now, "until")
        if replay_id is None:  # a live window: the last 24 hours up to now unless it says
            since = now - DEFAULT_WINDOW_MS if since is None else since
            until = now if until is None else until
        if since is not None and until is not None and since >= until:
            raise InvalidParameterValue("'since' must be before 'until'.")
        known = {n for cfg in self._db.endpoints.configs(endpoint.id) for n in served_names(cfg)}
        if candidate not in known:
            raise InvalidParameterValue(
                f"Invalid value for 'candidate': '{candidate}' is not a served entity of endpoint "
                f"'{endpoint.name}' (served entities: {', '.join(sorted(known)) or 'none'})."
            )
        if replay_id is not None:
            replay = self._db.replays.get(replay_id)
            if replay is None or replay.endpoint_id != endpoint.id:
                raise InvalidParameterValue(f"Invalid value for 'replay_id': no replay {replay_id!r} here.")
        table = self.table_of(caller, endpoint, config)
        return self.compute(endpoint.name, table, candidate, source, since, until, replay_id)

    def compute(
        self,
        endpoint: str,
        table: str,
        candidate: str,
        source: str,
        since_ms: int | None,
        until_ms: int | None,
        replay_id: str | None = None,
    ) -> dict[str, Any]:
        """The report over ``table`` (no permission check: the replay runner's report too)."""
        uri = table_uri(self.root, *split_name(table))
        if source == "shadow":
            pairs = shadow_pairs(uri, candidate, since_ms, until_ms)
        else:
            pairs = replay_pairs(uri, candidate, since_ms, until_ms, replay_id)
        summary = summarize(pairs, embed=self.embed)
        incumbents = sorted({a.served for a, _ in pairs if a.served})
        return {
            "endpoint": endpoint,
            "candidate": candidate,
            "incumbent": incumbents,
            "source": source,
            "replay_id": replay_id,
            "table": table,
            **summary,
            "since": since_ms,
            "until": until_ms,
        }
