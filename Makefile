# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-crash fuzz chaos chaos-short bootstrap image lint typecheck unit integration bench clean

## bench: every hot path against a hand-written peer in the same run (docs/benchmarks.md);
##        AGAINST=<checkout> also times every write on that checkout (bench/write_cost.py)
bench:
	BENCH=1 scripts/bootstrap.sh
	$(BIN)/python -m bench.read_path --png docs/benchmarks/read_path.png
	$(BIN)/python -m bench.enrollment_throughput --png docs/benchmarks/enrollment_throughput.png
	$(BIN)/python -m bench.command_to_mirror --png docs/benchmarks/command_to_mirror.png
	$(BIN)/python -m bench.recovery --static --png docs/benchmarks/recovery.png
	$(BIN)/python -m bench.catalog_search --png docs/benchmarks/catalog_search.png
	$(BIN)/python -m bench.learning_paths --png docs/benchmarks/learning_paths.png
	$(BIN)/python -m bench.enrollment_jobs
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.live_streams
	$(BIN)/python -m bench.api_latency
	$(BIN)/python -m bench.write_cost $(if $(AGAINST),--against $(AGAINST))

bootstrap:
	@scripts/bootstrap.sh

## image: the Dockerfile built with podman (the base made from Debian: no registry here)
image:
	@scripts/container-image.sh

## run: the service with its local stack on :8080 and demo data (Ctrl-C stops everything);
##      GATEWAY=1 also starts the HAProxy gateway in front of it (its URL is printed)
run: bootstrap
	$(BIN)/python -m devstack run $(if $(GATEWAY),--gateway)

## test: lint, types, then every test against the real local stack
test: bootstrap lint typecheck image
	$(BIN)/pytest -p no:cacheprovider -ra

## test-crash: only the SIGKILL-in-the-middle-of-1,000-enrollments test (make test runs it too)
test-crash: bootstrap
	$(BIN)/pytest -p no:cacheprovider -ra -m crash

## fuzz: a longer schemathesis pass (every operation, every role; FUZZ_EXAMPLES per operation)
fuzz: bootstrap
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(BIN)/pytest -p no:cacheprovider -ra tests/fuzz -s

## chaos: 2-3 workers under mixed load and faults drawn from a seed, then the history
##        checker (docs/chaos.md); SEED=, DURATION= (seconds); exits 1 on any anomaly
chaos: bootstrap
	$(BIN)/python -m chaos $(if $(SEED),--seed $(SEED)) $(if $(DURATION),--duration $(DURATION))

## chaos-short: the short run CI makes (fewer faults); its seed is the commit count, so a
##              failure replays with `make chaos-short SEED=<seed>`
chaos-short: bootstrap
	$(BIN)/python -m chaos --short --seed $(or $(SEED),$(shell git rev-list --count HEAD 2>/dev/null || echo 1))

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

unit: bootstrap
	$(BIN)/pytest tests/unit -q

clean:
	rm -rf .stack .data .mypy_cache .ruff_cache .pytest_cache
