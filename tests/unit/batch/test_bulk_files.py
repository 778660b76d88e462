"""Batch input files checked line by line, and a job's answers read back after a kill."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from modelport.batch.files import FileStore, parse_input
from modelport.batch.runner import _Answers
from modelport.errors import InvalidParameterValue, NotFound
from modelport.spec.identity import Caller


def _line(custom_id: str, url: str = "/v1/chat/completions", **body: object) -> bytes:
    data = {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": "chat", **body}}
    return orjson.dumps(data)


def _caller(name: str, admin: bool = False) -> Caller:
    return Caller(1, name, "user", ("admins",) if admin else (), frozenset({1}))


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (_line("a"), "used by an earlier line"),
        (_line("b", url="/v1/images/generations"), "'url' must be one of"),
        (orjson.dumps({"custom_id": "c", "method": "GET", "url": "/v1/embeddings", "body": {}}), "'method'"),
        (
            orjson.dumps({"custom_id": "d", "method": "POST", "url": "/v1/embeddings", "body": {}}),
            "body.model",
        ),
    ],
)
def test_a_bad_line_is_refused_by_number(bad: bytes, says: str) -> None:
    content = _line("a") + b"\n\n" + bad + b"\n"
    with pytest.raises(InvalidParameterValue, match=rf"Line 3 of the batch input file: .*{says}"):
        parse_input(content)


def test_good_lines_are_read_blank_lines_skipped() -> None:
    lines = parse_input(_line("a") + b"\r\n\n" + _line("b", url="/v1/embeddings", input="x"))
    assert [(line.custom_id, line.url, line.body.get("input")) for line in lines] == [
        ("a", "/v1/chat/completions", None),
        ("b", "/v1/embeddings", "x"),
    ]


def test_only_the_owner_and_admins_see_a_file(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    created = files.create("alice", "in.jsonl", "batch", _line("a"))
    assert files.get(_caller("alice"), created.id).bytes == len(_line("a"))
    assert files.get(_caller("root", admin=True), created.id).owner == "alice"
    with pytest.raises(NotFound):
        files.get(_caller("bob"), created.id)
    assert files.list(_caller("bob")) == []
    with pytest.raises(NotFound):
        files.get(_caller("alice"), "file-../../etc")


def test_a_torn_last_answer_is_cut_off_and_answered_again(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id":"a"}\n{"custom_id":"b"}\n{"custom_id":"c","resp')
    answers = _Answers(path)
    assert answers.recover() == {"a", "b"}
    answers.append({"custom_id": "c"})
    answers.close()
    assert [orjson.loads(line)["custom_id"] for line in path.read_bytes().splitlines()] == ["a", "b", "c"]
