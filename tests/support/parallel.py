"""How ``make test`` splits the suite over pytest-xdist workers (``-n 3 --dist loadgroup``).

:class:`SuiteScheduling` replaces xdist's ``loadgroup`` scheduler, and ``load``, the default of
a plain ``pytest -n N`` (``tests/conftest.py`` installs it); a *unit* of work goes to one worker
whole, its tests in collection order:

- the tests of one ``xdist_group`` mark, whatever files they are in (xdist's own rule);
- each package of :data:`PACKAGE_UNITS`: its files share package-scoped fixtures (one server
  for the package) or depend on each other's order;
- otherwise one test file, as ``--dist loadfile`` does: module- and session-scoped servers
  are started once per worker that needs them, never once per test.

Units are handed out heaviest first (:func:`weight`, from :data:`SECONDS` measured on a run),
the many small files last, so that no worker is left with a long file when the others are done.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

__all__ = ["PACKAGE_UNITS", "SECONDS", "SuiteScheduling", "unit_of", "weight"]

#: Packages that run as one unit, on one worker, in collection order.
PACKAGE_UNITS = (
    # One server for the package; the authorization matrix must run before the fuzzer, which
    # leaves random objects behind (tests/security/conftest.py).
    "tests/security/",
    # One ``modelport serve --demo`` with the system LLMs for the docs and the demo tests.
    "tests/docs/",
    # One server with the system LLMs for the package.
    "tests/foundation/",
    # One server and one chromium page; the tests build on each other in file order.
    "tests/browser/",
    # The console pages (issue 23): one server and one chromium page of their own, beside tests/browser/.
    "tests/console/",
    # One private PostgreSQL, Redis and server (spool on a tmpfs) for the package's fault tests.
    "tests/faults/",
    # Ray clusters in network namespaces: one at a time (each runs a dozen processes).
    "tests/ray/",
    # One server with a custom model, chat and embeddings endpoints (tests/batch/world.py).
    "tests/batch/",
    # One server with the behaving model's versions for the safe-rollouts tests (tests/rollouts/world.py).
    "tests/rollouts/",
    # One server with a ResponsesAgent, a ChatAgent and the LLM they call (tests/agents/world.py).
    "tests/agents/",
)

#: Seconds each unit took (setup, call and teardown of its tests, summed from ``--durations=0``)
#: in a 3-worker run on 2 cores; only their order matters. The first unit a worker runs also
#: pays for the session servers it starts. A unit not listed weighs :data:`DEFAULT_SECONDS` of
#: its folder under tests/ (else :data:`OTHER_SECONDS`). Refresh after large changes to the suite.
SECONDS: dict[str, float] = {
    "tests/ray/": 400,
    "tests/docs/": 180,
    "tests/integration/test_response_cache.py": 65,
    "tests/integration/test_feature_serving.py": 40,
    "tests/integration/test_feature_tables.py": 20,
    "tests/integration/test_online_store_servers.py": 72,
    # ai_query, table jobs and the Spark UDF on one server (a local Spark session: 15-60 s).
    "tests/batch/": 110,
    # Config history, shadows, replay, canaries (steps of a few seconds) and the event log.
    "tests/rollouts/": 120,
    # Two agents (MLflow pyfunc replicas) and an external LLM on one server; tools, traces.
    "tests/agents/": 90,
    "tests/integration/test_monitors.py": 50,
    "tests/integration/test_openai_batches.py": 35,
    "tests/integration/test_feature_usage.py": 30,
    "tests/integration/test_feature_spec_endpoints.py": 20,
    "tests/integration/test_sdk_lifecycle.py": 128,
    "tests/integration/test_migrate.py": 105,
    "tests/integration/test_scaleout.py": 75,
    "tests/integration/test_workers.py": 70,
    "tests/security/": 85,
    "tests/integration/test_cli.py": 79,
    "tests/integration/test_restart.py": 78,
    "tests/integration/test_gateway_tables.py": 68,
    "tests/integration/test_upgrade.py": 56,
    "tests/integration/test_auth.py": 53,
    "tests/engines/test_llamacpp_engine.py": 42,
    "tests/browser/": 175,
    "tests/console/": 150,
    "tests/integration/test_secrets_key_rotation.py": 41,
    "tests/foundation/": 50,
    "tests/integration/test_external_registry.py": 38,
    "tests/faults/": 33,
    "tests/integration/test_revocation.py": 33,
    "tests/integration/test_gateway_limits.py": 30,
    "tests/engines/test_embeddings.py": 29,
    "tests/integration/test_table_permissions.py": 29,
    "tests/integration/test_custom_models.py": 28,
    "tests/integration/test_model_seal.py": 26,
    "tests/integration/test_shared_registry.py": 26,
    "tests/integration/test_hardening.py": 20,
    "tests/integration/test_cold_start.py": 20,
    "tests/integration/test_audit_log.py": 19,
    "tests/integration/test_flavors.py": 17,
    "tests/integration/test_zygote.py": 15,
    "tests/integration/test_worker_process.py": 15,
    "tests/integration/test_external_providers.py": 14,
    "tests/integration/test_model_environments.py": 13,
    "tests/integration/test_zero_downtime.py": 12,
    "tests/integration/test_sdk_errors.py": 12,
    "tests/integration/test_secrets.py": 12,
    "tests/integration/providers/test_vertex.py": 10,
    "tests/integration/test_startup.py": 10,
    "tests/integration/test_external_anthropic_bedrock.py": 10,
    "tests/store/test_secrets.py": 10,
    "tests/integration/test_registry_permissions.py": 9,
    "tests/integration/test_tls.py": 8,
    "tests/integration/test_mlflow_deployments.py": 7,
    "tests/store/test_store.py": 6,
    "tests/integration/test_replica_errors.py": 6,
    "tests/integration/test_external_models.py": 6,
    "tests/engines/test_vllm_engine.py": 6,
}

#: The weight of a unit missing from :data:`SECONDS`, by its folder under tests/.
DEFAULT_SECONDS = {"unit": 1.0, "fakes": 2.0, "store": 5.0, "tables": 5.0, "redis": 5.0}
OTHER_SECONDS = 10.0


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to (see the module's docstring)."""
    if nodeid.rfind("@") > nodeid.rfind("]"):  # "…@group", added by xdist for xdist_group marks
        return nodeid.rsplit("@", 1)[1]
    for package in PACKAGE_UNITS:
        if nodeid.startswith(package):
            return package
    return nodeid.split("::", 1)[0]


def weight(unit: str, tests: int) -> float:
    """How long ``unit`` (of ``tests`` tests) is expected to take: the higher, the earlier it runs."""
    if unit in SECONDS:
        return SECONDS[unit]
    parts = unit.split("/")
    folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
    return DEFAULT_SECONDS.get(folder, OTHER_SECONDS) + 0.01 * tests


class SuiteScheduling(LoadScopeScheduling):
    """xdist's scope scheduling over the units of :func:`unit_of`, heaviest first."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def schedule(self) -> None:
        """``LoadScopeScheduling.schedule`` (pytest-xdist 3.8) with the work queue in
        :func:`weight` order instead of by number of tests."""
        assert self.collection_is_completed
        if self.collection is not None:  # initial distribution done: nodes added later
            for node in self.nodes:
                self._reschedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = list(next(iter(self.registered_collections.values())))
        if not self.collection:
            return
        units: dict[str, dict[str, bool]] = {}
        for nodeid in self.collection:
            units.setdefault(self._split_scope(nodeid), {})[nodeid] = False
        for unit in sorted(units, key=lambda u: -weight(u, len(units[u]))):
            self.workqueue[unit] = units[unit]
        for _ in range(len(self.nodes) - len(self.workqueue)):  # more workers than units
            unused, _assigned = self.assigned_work.popitem()
            unused.shutdown()
        for node in self.nodes:
            self._assign_work_unit(node)
        for node in self.nodes:
            self._reschedule(node)
        if not self.workqueue:
            for node in self.nodes:
                node.shutdown()
