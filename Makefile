# modelport: `make run` installs everything and starts the server with demo endpoints;
# `make test` installs everything and runs the linters and the test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
PORT   ?= 8080
DATA   ?= $(HOME)/.modelport

.PHONY: browser-deps java-deps pgbouncer-deps install run test lint unit fuzz docs bench bench-external bench-foundation bench-install format clean bench-monitoring bench-batch-llm bench-batch-resume bench-rollout bench-shadow bench-console

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# /opt/wheels holds the CPU build of torch on the project's machines; elsewhere the torch
# extra is left out rather than pulling gigabytes of CUDA packages from the index.
# The llm extra needs llama-cpp-python, which PyPI has only as source: scripts/build_llama_wheel.sh
# builds it once per machine (~10 minutes) into ~/.cache/modelport/wheels, found from there later.
COMMA  := ,
EXTRAS := dev,llm,ray,spark$(if $(wildcard /opt/wheels),$(COMMA)torch,)
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

# The UI's browser tests drive Debian's chromium (tests/browser); installed here when missing and
# this user may (root, or sudo without a password); the tests skip with a message otherwise.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
			|| echo "chromium could not be installed: the browser tests will be skipped"; \
		elif sudo -n true 2>/dev/null; then sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
			|| echo "chromium could not be installed: the browser tests will be skipped"; \
		else echo "chromium is not installed and cannot be installed here: the browser tests will be skipped"; fi; }

# PgBouncer (Debian's package) for the tests that run the lease and the change counter through a
# transaction-mode pooler (tests/store/test_pgbouncer.py); they skip without it outside CI.
pgbouncer-deps:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || { \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
			|| echo "pgbouncer could not be installed: its tests will be skipped"; \
		elif sudo -n true 2>/dev/null; then sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
			|| echo "pgbouncer could not be installed: its tests will be skipped"; \
		else echo "pgbouncer is not installed and cannot be installed here: its tests will be skipped"; fi; }

# Java 17+ for the Spark tests (tests/batch/test_spark_udf.py: pyspark 4 starts a JVM); Debian's headless JRE when
# missing and this user may install it; the tests skip without it outside CI.
java-deps:
	@command -v java >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null \
			|| echo "java could not be installed: the Spark tests will be skipped"; \
		elif sudo -n true 2>/dev/null; then sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null \
			|| echo "java could not be installed: the Spark tests will be skipped"; \
		else echo "java is not installed and cannot be installed here: the Spark tests will be skipped"; fi; }

install: $(UV)
	$(UV) pip install --quiet --python $(BIN)/python $(FIND_LINKS) \
		--find-links "$$(scripts/build_llama_wheel.sh $(BIN)/python)" -e ".[$(EXTRAS)]"

run: install
	$(BIN)/modelport serve --demo --port $(PORT) --data-dir $(DATA) --log-format text

lint: install
	$(BIN)/ruff check modelport tests scripts bench
	$(BIN)/ruff format --check modelport tests scripts bench
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit -q

# pytest-xdist workers: whole files, and packages that share one server, go to one worker
# (tests/support/parallel.py). On 2 cores 3 were fastest (2: 9.9 min, 3: 8.3, 4: 9.3; with 3 both
# cores are busy, with 4 they only switch more). TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 3
test: lint browser-deps java-deps pgbouncer-deps
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup --durations=30

# modelport vs mlflow models serve, Ray Serve and bare references; appends to bench/RESULTS.md.
bench: bench-install
	$(BIN)/python bench/custom_model.py --out bench/RESULTS.md $(BENCH_ARGS)

# modelport vs MLflow's AI gateway and LiteLLM's proxy in front of a loopback OpenAI fake;
# appends to bench/RESULTS.md (LiteLLM gets a venv of its own under bench/.venvs/).
bench-external: bench-install
	$(BIN)/python bench/external_proxy.py --out bench/RESULTS.md $(BENCH_ARGS)

# Foundation models: tokens/s and time to first token through modelport vs the engine in-process,
# embeddings/s at batch 1, 8 and 64; appends to bench/RESULTS.md.
bench-foundation: bench-install
	$(BIN)/python bench/foundation.py --out bench/RESULTS.md $(BENCH_ARGS)

bench-install: $(UV)
	$(UV) pip install --quiet --python $(BIN)/python $(FIND_LINKS) \
		--find-links "$$(scripts/build_llama_wheel.sh $(BIN)/python)" -e ".[$(EXTRAS),bench]"

# Schemathesis against modelport's own OpenAPI document on a real server: at least 5,000
# generated cases (80 an operation as the admin, 16 as a user with no permission, plus the
# coverage and stateful phases), 0 5xx; prints the figures (tests/security/test_fuzz.py).
fuzz: install
	MODELPORT_FUZZ_EXAMPLES=80 MODELPORT_FUZZ_MIN_CASES=5000 MODELPORT_FUZZ_SEED= \
		$(BIN)/pytest -q -s -p no:cacheprovider --timeout 3600 tests/security/test_fuzz.py

docs: install
	$(BIN)/python scripts/gen_docs.py

format: install
	$(BIN)/ruff format modelport tests scripts bench
	$(BIN)/ruff check --fix modelport tests scripts bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# What the AI-gateway features cost: usage + inference tables and rate limits (in-process and
# Redis counters) against no ai_gateway, on an external-model and a custom-model endpoint;
# appends to bench/RESULTS.md (the Redis server part needs Redis on 127.0.0.1:6379).
bench-gateway: bench-install
	$(BIN)/python bench/gateway.py --out bench/RESULTS.md $(BENCH_ARGS)

# The response cache (issue 17): hits vs the bare echo app and cache off at c=64, misses vs cache
# off, a hit's p50 at c=1; in-process and Redis caches (Redis on 127.0.0.1:6379 when it answers);
# appends to bench/RESULTS.md.
bench-cache: bench-install
	$(BIN)/python bench/response_cache.py --out bench/RESULTS.md $(BENCH_ARGS)

# Feature serving (issue 18): what a lookup in the embedded online store adds to a 1-row query
# (key only vs the features in the request; batching on/off servers beside) and the publish time
# of 1 million rows; appends to bench/RESULTS.md.
bench-features: bench-install
	$(BIN)/python bench/features.py --out bench/RESULTS.md $(BENCH_ARGS)

# Shadow traffic (issue 21): two endpoints identical but for a 25 % shadow, interleaved rounds of
# closed-loop clients at c=1 and c=16 (req/s, p50, p99, the on/off ratio); appends to bench/RESULTS.md.
bench-shadow: bench-install
	$(BIN)/python bench/shadow.py --out bench/RESULTS.md $(BENCH_ARGS)

# Canary rollback (issue 21): a rollout whose candidate starts failing 20 % of its queries mid-step;
# time to the rollback decision and failed live queries against the targets; appends to bench/RESULTS.md.
bench-rollout: bench-install
	$(BIN)/python bench/rollout.py --out bench/RESULTS.md $(BENCH_ARGS)

# Console first paint (issue 23): each console page in chromium (playwright) with 200 endpoints and
# 1 million usage rows (generated in a temporary folder); median of 7 loads against the 300 ms
# target; appends to bench/RESULTS.md.
bench-console: bench-install browser-deps
	$(BIN)/python bench/console.py --out bench/RESULTS.md $(BENCH_ARGS)

# Feature-spec endpoints vs Feast's Python feature server (Redis and SQLite stores, Feast in a venv
# of its own under bench/.venvs/feast): 1 key, 10 features, c=1 and c=64; appends to bench/RESULTS.md.
bench-feature-serving: bench-install
	$(BIN)/python bench/feature_spec_serving.py --out bench/RESULTS.md $(BENCH_ARGS)

# Batch inference (issue 19): 1 million rows of a custom model through ai_query in SQL vs a tuned
# Python client (batch x concurrency sweep, best kept), Ray Data map_batches over HTTP and
# in-process predict; appends to bench/RESULTS.md.
bench-batch: bench-install
	$(BIN)/python bench/batch.py --out bench/RESULTS.md $(BENCH_ARGS)

# Monitoring (issue 20): full and incremental refresh over 1 million inference rows, drift vs scipy,
# verdicts and speed vs Evidently's DataDriftPreset (its own venv under bench/.venvs, built on first use)
bench-monitoring: bench-install
	$(BIN)/python bench/monitoring.py --out bench/RESULTS.md $(BENCH_ARGS)

# Batch inference on an LLM endpoint (issue 19): ai_query tokens/s vs online concurrency 1-16
# on the system SmolLM2 (10-35 minutes), and a 100,000-line bulk job killed with -9 and resumed
bench-batch-llm: bench-install
	$(BIN)/python bench/batch_llm.py --out bench/RESULTS.md $(BENCH_ARGS)

bench-batch-resume: bench-install
	$(BIN)/python bench/batch_resume.py --out bench/RESULTS.md $(BENCH_ARGS)
