"""The tables of table jobs (``batch/table_jobs.py``): reading an input (an uploaded Parquet,
CSV or JSON-lines file, or a Delta table at one version) and appending answers to the output
Delta table.

The output holds :data:`ROW_ID` (the row's position in the input, from 0), the input's columns,
:data:`RESULT` and :data:`ERROR` (the names ``ai_query(..., failOnError => false)`` gives its
struct's fields). Each append is one Delta commit carrying the job's id and the input's
fingerprint in its commit metadata (:data:`JOB_KEY`, :data:`INPUT_KEY`): the output says whose
answers it holds even when the job's record is gone.

Blocking (file and table I/O): call from a thread.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from modelport.errors import InvalidParameterValue

__all__ = [
    "ERROR",
    "FORMATS",
    "INPUT_KEY",
    "JOB_KEY",
    "RESULT",
    "ROW_ID",
    "OutputState",
    "append",
    "delta_shape",
    "delta_version",
    "file_format",
    "file_sha256",
    "output_state",
    "read_delta",
    "read_file",
]

ROW_ID, RESULT, ERROR = "row_id", "result", "errorMessage"
JOB_KEY, INPUT_KEY = "modelport.batch_job_id", "modelport.batch_input"
_SIGNED = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.int64()}
#: A file's format, by the end of its name.
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def file_format(filename: str) -> str:
    """The input format a file name says (400 for any other)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidParameterValue(
            f"Cannot tell the format of '{filename}': name it .parquet, .csv, .jsonl or .json."
        )
    return FORMATS[suffix]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _readable(table: pa.Table) -> pa.Table:
    """Types a Delta table holds: an all-NULL column (no type) becomes a string column,
    dictionary-encoded ones are decoded, views become plain strings and binaries, unsigned
    integers the next signed type (``uint64`` ``int64``: a larger value is refused), half floats
    floats."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_null(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        elif pa.types.is_binary_view(t):
            t = pa.binary()
        elif pa.types.is_unsigned_integer(t):  # Delta has no unsigned types
            t = _SIGNED[t.bit_width]
        elif pa.types.is_float16(t):
            t = pa.float32()
        fields.append(pa.field(f.name, t))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def _check_columns(table: pa.Table, what: str, *, rows: bool = True) -> pa.Table:
    taken = {ROW_ID.lower(), RESULT.lower(), ERROR.lower()}
    clash = [name for name in table.column_names if name.lower() in taken]
    if clash:
        raise InvalidParameterValue(
            f"{what} has a column named {clash[0]!r}, which the output table uses for its own "
            f"({ROW_ID}, {RESULT}, {ERROR}): rename it first."
        )
    if rows and table.num_rows == 0:
        raise InvalidParameterValue(f"{what} holds no rows.")
    return _readable(table)


def read_file(path: Path, fmt: str, name: str) -> pa.Table:
    """An uploaded input file's rows (400 naming the file when it is not what its name says)."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        elif fmt == "csv":
            table = pcsv.read_csv(path)
        else:
            table = pjson.read_json(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InvalidParameterValue(f"Cannot read '{name}' as {fmt}: {first}") from None
    return _check_columns(table, f"'{name}'")


def delta_version(uri: str) -> int:
    return int(DeltaTable(uri).version())


def delta_shape(uri: str, version: int, name: str) -> tuple[list[str], int]:
    """Table ``name``'s columns and row count at ``version``, checked as :func:`read_delta`
    checks them, without reading its rows."""
    dataset = DeltaTable(uri, version=version).to_pyarrow_dataset()
    empty = _check_columns(dataset.schema.empty_table(), f"Table '{name}'", rows=False)
    rows = int(dataset.count_rows())
    if rows == 0:
        raise InvalidParameterValue(f"Table '{name}' holds no rows.")
    return empty.column_names, rows


def read_delta(uri: str, version: int, name: str) -> pa.Table:
    """Table ``name``'s rows at ``version``, in the order of its files (the same at every read)."""
    return _check_columns(DeltaTable(uri, version=version).to_pyarrow_table(), f"Table '{name}'")


@dataclass
class OutputState:
    """What an output table holds: the row ids answered, how many failed and why, and whose
    answers they are (the last commit's metadata)."""

    row_ids: pa.Array
    failed: int
    errors: Counter[str]
    job_id: str | None
    fingerprint: str | None


def output_state(uri: str) -> OutputState | None:
    """The output table at ``uri`` (None when there is none)."""
    try:
        dt = DeltaTable(uri)
    except TableNotFoundError:
        return None
    names = {f.name for f in dt.schema().fields}
    last: dict[str, Any] = (dt.history(1) or [{}])[0]
    job_id, fingerprint = last.get(JOB_KEY), last.get(INPUT_KEY)
    if ROW_ID not in names or ERROR not in names:
        return OutputState(pa.array([], pa.int64()), 0, Counter(), None, None)
    data = dt.to_pyarrow_table(columns=[ROW_ID, ERROR])
    errors = data.column(ERROR).drop_null()
    counts: Counter[str] = Counter()
    for item in pc.value_counts(errors).to_pylist():
        counts[str(item["values"])] = int(item["counts"])
    return OutputState(
        data.column(ROW_ID).combine_chunks(),
        len(errors),
        counts,
        str(job_id) if job_id else None,
        str(fingerprint) if fingerprint else None,
    )


def append(uri: str, rows: pa.Table, job_id: str, fingerprint: str) -> None:
    """One atomic append (one Delta commit) naming the job and its input."""
    write_deltalake(
        uri,
        _readable(rows),
        mode="append",
        commit_properties=CommitProperties(custom_metadata={JOB_KEY: job_id, INPUT_KEY: fingerprint}),
    )
