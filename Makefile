# lenscal: every target builds what it needs (venv, generated protobuf code) itself.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: on these machines this exact pair comes from local
# disk; a range admitting newer releases downloads several GB. Override on other hosts.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,cpu
STAMP := $(VENV)/.lenscal-installed
PROTOS := $(shell find proto -name '*.proto')
PROTO_STAMP := shared/lenscal_pb/.generated
PYTEST_ARGS ?=
DEMO_OUT ?= demo-output

.PHONY: help venv proto browser test test-unit test-e2e lint docs demo bench bench-gpu clean images up down smoke

help:
	@echo "make demo   - set up and run the demo on embedded defaults (writes $(DEMO_OUT)/)"
	@echo "make test   - set up, lint, and run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make docs   - the CLI reference from --help, then the site (mkdocs build --strict)"
	@echo "make bench  - benchmarks in bench/ (not part of the tests); make bench-gpu on a GPU machine"
	@echo "make images - build the container images (deploy/Dockerfile); make up / make down"
	@echo "make smoke  - the container smoke test (deploy/smoke-test.sh; SMOKE_ARGS for CI options)"

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

venv: $(STAMP)

$(PROTO_STAMP): $(STAMP) $(PROTOS) proto/generate.py
	$(BIN)/python proto/generate.py
	touch $@

proto: $(PROTO_STAMP)

lint: $(PROTO_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint deploy/Dockerfile

# The CLI reference is generated from --help; --strict makes a broken link fail the build.
docs: $(PROTO_STAMP)
	$(BIN)/python docs/make_cli_reference.py
	$(BIN)/mkdocs build --strict --quiet

test-unit: $(PROTO_STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The UI's browser test drives Debian's chromium through chromium-driver (never a browser
# downloaded at run time): installed with apt when absent.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver (the UI's browser test)"; \
	  $(SUDO) apt-get install -y -q chromium chromium-driver \
	  || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }; }

test-e2e: browser $(PROTO_STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test: lint browser $(PROTO_STAMP)
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(PROTO_STAMP)
	$(BIN)/lenscal demo --out $(DEMO_OUT)

bench: $(PROTO_STAMP)
	$(BIN)/python bench/shards.py
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/inject.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/scorer.py
	$(BIN)/python bench/grid.py
	$(BIN)/python bench/survey.py --n 200000  # the script's default, 1M, takes ~1 h on 2 cores

# On a lent GPU machine: every GPU figure in one JSON (bench/out/gpu.json), under 8 minutes.
bench-gpu: $(PROTO_STAMP)
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) $(PROTO_STAMP) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
	find shared/lenscal_pb -name '*_pb2*.py*' -delete

# --- containers (README "Containers") -------------------------------------------------------
COMPOSE := $(BIN)/docker-compose -f deploy/compose.yaml
PROFILES ?=
COMPOSE_ENV ?=
SMOKE_ARGS ?=

images: $(STAMP)
	$(COMPOSE) --profile tools --profile onnx build

up: $(STAMP)
	$(COMPOSE) $(foreach p,$(PROFILES),--profile $(p)) $(if $(COMPOSE_ENV),--env-file $(COMPOSE_ENV)) up -d --wait

down: $(STAMP)
	$(COMPOSE) --profile gpu --profile postgres --profile dask --profile tools down

smoke: $(STAMP)
	deploy/smoke-test.sh $(SMOKE_ARGS)
