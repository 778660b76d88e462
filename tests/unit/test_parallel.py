"""How ``make test`` splits the suite over xdist workers (tests/support/parallel.py): the units
of work, and the order and grouping in which the scheduler hands them to the workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.parallel import SECONDS, SuiteScheduling, unit_of, weight


@pytest.mark.parametrize(
    ("nodeid", "unit"),
    [
        ("tests/integration/test_auth.py::test_token[sqlite]", "tests/integration/test_auth.py"),
        ("tests/unit/test_config.py::TestEnv::test_bool", "tests/unit/test_config.py"),
        ("tests/security/test_fuzz.py::test_fuzzing_finds_no_server_error", "tests/security/"),
        ("tests/docs/test_demo.py::test_the_commands", "tests/docs/"),
        ("tests/faults/test_redis_down.py::test_x", "tests/faults/"),
        # xdist adds "@<group>" to the test id of an xdist_group mark under --dist loadgroup
        ("tests/integration/test_cold_start.py::test_burst@timing", "timing"),
        ("tests/docs/test_docs.py::test_document[a@b.md]", "tests/docs/"),
        ("tests/unit/test_x.py::test_y[user@example.com]", "tests/unit/test_x.py"),
    ],
)
def test_unit_of(nodeid: str, unit: str) -> None:
    assert unit_of(nodeid) == unit


def test_weight_uses_the_measured_seconds_then_the_folder() -> None:
    assert weight("tests/docs/", 11) == SECONDS["tests/docs/"]
    assert weight("tests/unit/test_new.py", 5) < weight("tests/store/test_new.py", 5)
    assert weight("tests/store/test_new.py", 5) < weight("tests/integration/test_new.py", 5)
    assert weight("tests/integration/test_new.py", 50) > weight("tests/integration/test_new.py", 5)


class FakeWorker:
    """What the scheduler calls on an xdist WorkerController."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def scheduled(collection: list[str], workers: int) -> tuple[SuiteScheduling, list[FakeWorker]]:
    config: Any = SimpleNamespace(getvalue=lambda name: [f"{workers}*popen"] if name == "tx" else None)
    sched = SuiteScheduling(config)
    nodes = [FakeWorker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)  # type: ignore[arg-type]
        sched.add_node_collection(node, collection)  # type: ignore[arg-type]
    sched.schedule()
    return sched, nodes


def run(sched: SuiteScheduling, nodes: list[FakeWorker], collection: list[str]) -> dict[str, list[str]]:
    """Complete every test sent, worker after worker, until the scheduler sends no more."""
    ran: dict[str, list[str]] = {node.name: [] for node in nodes}
    progress = True
    while progress:
        progress = False
        for node in nodes:
            while len(ran[node.name]) < len(node.sent):
                index = node.sent[len(ran[node.name])]
                ran[node.name].append(collection[index])
                sched.mark_test_complete(node, index)  # type: ignore[arg-type]
                progress = True
    assert sorted(t for tests in ran.values() for t in tests) == sorted(collection)
    assert sched.tests_finished
    return ran


COLLECTION = [
    "tests/browser/test_ui.py::test_login",
    "tests/browser/test_ui.py::test_endpoints",
    "tests/docs/test_demo.py::test_demo",
    "tests/docs/test_docs.py::test_document[README.md]",
    "tests/integration/test_sdk_lifecycle.py::test_create[sqlite]",
    "tests/integration/test_sdk_lifecycle.py::test_create[postgresql]",
    "tests/integration/test_brand_new.py::test_one",
    "tests/security/test_authorization_matrix.py::test_matrix",
    "tests/security/test_fuzz.py::test_fuzzing",
    "tests/unit/test_a.py::test_1",
    "tests/unit/test_a.py::test_2",
    "tests/unit/test_b.py::test_1",
]


def test_units_go_to_one_worker_whole_in_file_order_heaviest_first() -> None:
    sched, nodes = scheduled(COLLECTION, workers=3)
    # The three heaviest units start first, one on each worker.
    first = {COLLECTION[node.sent[0]] for node in nodes}
    assert first == {
        "tests/docs/test_demo.py::test_demo",
        "tests/browser/test_ui.py::test_login",
        "tests/integration/test_sdk_lifecycle.py::test_create[sqlite]",
    }
    ran = run(sched, nodes, COLLECTION)
    for unit in {unit_of(nodeid) for nodeid in COLLECTION}:
        owners = [name for name, tests in ran.items() if any(unit_of(t) == unit for t in tests)]
        assert len(owners) == 1, f"{unit} ran on {owners}"
        tests = ran[owners[0]]
        assert [t for t in tests if unit_of(t) == unit] == [t for t in COLLECTION if unit_of(t) == unit]
    # The matrix runs before the fuzzer, on the same server.
    security = next(tests for tests in ran.values() if "tests/security/test_fuzz.py::test_fuzzing" in tests)
    assert security.index("tests/security/test_authorization_matrix.py::test_matrix") < security.index(
        "tests/security/test_fuzz.py::test_fuzzing"
    )
    # Unit test files come after every heavier unit on their worker.
    for tests in ran.values():
        weights = [weight(unit_of(t), 1) for t in tests]
        assert weights == sorted(weights, reverse=True), tests


def test_more_workers_than_units_shuts_the_extra_ones_down() -> None:
    collection = ["tests/unit/test_a.py::test_1", "tests/unit/test_a.py::test_2"]
    _sched, nodes = scheduled(collection, workers=3)
    assert sum(node.shutting_down for node in nodes) >= 2
    assert sorted(i for node in nodes for i in node.sent) == [0, 1]
