#!/usr/bin/env bash
# The container smoke test: build the images, bring the compose stack up, run a tiny
# diagnostic flow (D05, demo preset) through the containerised Prefect server, worker, scorer
# and injector, run a training as a Docker work-pool job, check the results; then the stack
# again under the postgres profile (Prefect and the registry on PostgreSQL) with D05 run twice,
# the database restarted during the second run; tear down.
#
#   deploy/smoke-test.sh                 # Docker running, python:3.11-slim pullable
#   deploy/smoke-test.sh --engine --local-base --local-wheels --host-ca   # what CI runs
#
#   --engine        install Debian's docker.io when dockerd is missing; start dockerd (its
#                   pid recorded, stopped at the end)
#   --local-base    no registry reachable: build a python:3.11-slim stand-in (mmdebstrap, then
#                   docker import) when the tag is missing
#   --local-wheels  serve this machine's wheel directories to the build over loopback
#                   (LOCAL_WHEEL_DIRS, default /opt/pypi-more /opt/pypi)
#   --host-ca       add this machine's CA bundle to the build (a TLS-intercepting proxy);
#                   copied to deploy/certs/ (git-ignored) and removed at the end
# Every step runs under a timeout; anything failing stops the script with its status.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=0 LOCAL_BASE=0 LOCAL_WHEELS=0 HOST_CA=0
for arg in "$@"; do
  case "$arg" in
    --engine) ENGINE=1 ;;
    --local-base) LOCAL_BASE=1 ;;
    --local-wheels) LOCAL_WHEELS=1 ;;
    --host-ca) HOST_CA=1 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done

DOCKER_ROOT=${DOCKER_ROOT:-/var/lib/lenscal-docker}
LOCAL_WHEEL_DIRS=${LOCAL_WHEEL_DIRS:-/opt/pypi-more /opt/pypi}
VENV_BIN=${VENV_BIN:-.venv/bin}
COMPOSE=("$VENV_BIN/docker-compose" -f deploy/compose.yaml)
export DEMO_N=${DEMO_N:-300} TRAIN_EPOCHS=${TRAIN_EPOCHS:-2}
DOCKERD_PID="" SERVER_PIDS=()
started=$(date +%s)

step() { echo "[smoke $(( $(date +%s) - started ))s] $*"; }

cleanup() {
  local status=$?
  set +e
  if [ -n "${STACK_UP:-}" ]; then
    if [ "$status" -ne 0 ]; then timeout 60 "${COMPOSE[@]}" logs --tail 60; fi
    timeout 120 "${COMPOSE[@]}" --profile tools --profile onnx --profile postgres down --volumes \
      --remove-orphans
  fi
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -f deploy/certs/host-ca.crt
  if [ -n "$DOCKERD_PID" ]; then
    step "stopping dockerd (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
  fi
  step "done (status $status)"
  exit "$status"
}
trap cleanup EXIT

# 1. engine
if ! timeout 20 docker info >/dev/null 2>&1; then
  [ "$ENGINE" = 1 ] || { echo "no Docker engine (pass --engine to install and start one)" >&2; exit 1; }
  if ! command -v dockerd >/dev/null; then
    step "installing docker.io"
    timeout 300 apt-get update -q >/dev/null
    timeout 600 apt-get install -y -q docker.io >/dev/null
  fi
  mkdir -p "$DOCKER_ROOT"
  dockerd --data-root "$DOCKER_ROOT" >/tmp/lenscal-dockerd.log 2>&1 &
  DOCKERD_PID=$!
  step "dockerd started (pid $DOCKERD_PID)"
  for _ in $(seq 60); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 1; done
  timeout 10 docker info >/dev/null
fi

# 2. base image
if [ "$LOCAL_BASE" = 1 ] && ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
  if ! command -v mmdebstrap >/dev/null; then
    timeout 300 apt-get update -q >/dev/null
    timeout 600 apt-get install -y -q mmdebstrap >/dev/null
  fi
  step "building the python:3.11-slim stand-in (mmdebstrap bookworm minbase + docker import)"
  timeout 900 bash -c 'mmdebstrap --quiet --variant=minbase \
      --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd \
      bookworm - | docker import --change "CMD [\"python3\"]" - python:3.11-slim'
fi

# 3. build inputs: local wheels over loopback, the host's CA
BUILD_ARGS=()
if [ "$LOCAL_WHEELS" = 1 ]; then
  extra="" port=18765
  for dir in $LOCAL_WHEEL_DIRS; do
    python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
    SERVER_PIDS+=($!)
    extra="$extra http://127.0.0.1:$port/simple"
    port=$((port + 1))
  done
  sleep 1
  BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=${extra# }" --build-arg PIP_TRUSTED_HOST=127.0.0.1
               --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
fi
if [ "$HOST_CA" = 1 ]; then
  cp /etc/ssl/certs/ca-certificates.crt deploy/certs/host-ca.crt
fi

# 4. images
step "building images"
for target in scorer-onnx scorer worker injector trainer postgres; do
  timeout 1800 docker build --network host -q -f deploy/Dockerfile --target "$target" \
    "${BUILD_ARGS[@]}" -t "lenscal/$target:latest" . >/dev/null
  step "  lenscal/$target: $(docker image inspect -f '{{.Size}}' "lenscal/$target:latest" \
    | awk '{printf "%.0f MB", $1 / 1e6}')"
done

# 5. data and a model in the volumes (run-to-completion services)
STACK_UP=1
step "demo data ($DEMO_N cutouts) into the data volume"
timeout 900 "${COMPOSE[@]}" --profile tools run --rm demo-data >/dev/null
step "training the scorers' model ($TRAIN_EPOCHS epochs) into the checkpoints volume"
# Not recorded in the registry: train/demo_resnet is recorded by the container job below.
timeout 1200 "${COMPOSE[@]}" --profile tools run --rm trainer lenscal train --no-registry \
  --config /opt/lenscal/configs/train/demo_resnet.yaml \
  --set dataset.manifest_path=/data/demo/shards/manifest.parquet \
  --set train.out_dir=/checkpoints/demo_resnet --set "train.epochs=$TRAIN_EPOCHS" --set train.device=cpu \
  >/dev/null

# 6. the stack
step "compose up --wait (default stack and the torch-free scorer)"
timeout 600 "${COMPOSE[@]}" --profile onnx up -d --wait --wait-timeout 480

# 7. a tiny diagnostic through the containerised services
step "diagnostic/D05 (demo preset) on the stack"
timeout 1200 "${COMPOSE[@]}" exec -T worker lenscal run D05 --param preset=demo --watch --timeout-s 1100
timeout 120 "${COMPOSE[@]}" exec -T worker python - <<'EOF'
import json, pathlib, re
from lenscal.registry.store import Registry
# a demo run is recorded as D05_<YYYYMMDD>_demo, never under the team's D05
runs = [r for r in Registry().records(kind="diagnostic") if re.fullmatch(r"D05_\d{8}_demo", r.id)]
assert runs, [r.id for r in Registry().records()]
record = runs[-1]
assert record.status == "Complete", record.status
results = pathlib.Path(record.results_path)
files = sorted(p.name for p in results.rglob("*") if p.is_file())
assert any(f.endswith(".png") for f in files) and any(f.endswith(".json") for f in files), files
print(json.dumps({record.id: record.status, "results": str(results), "files": len(files)}))
EOF

step "lenscal ui (the ui service, read-only volumes) shows the run, its report and a figure"
timeout 120 python3 - <<'EOF'
import json, re, urllib.request as u
base = "http://127.0.0.1:8765"
records = json.load(u.urlopen(f"{base}/api/records?kind=diagnostic", timeout=30))["records"]
run = next(r for r in records if re.fullmatch(r"D05_\d{8}_demo", r["id"]))
page = json.load(u.urlopen(f"{base}/api/records/{run['id']}", timeout=30))["results_url"]
assert page and page.startswith("/results/results/"), page
html = u.urlopen(base + page, timeout=30).read().decode()
figure = re.search(r'<img src="([^"]+)"', html).group(1)
png = u.urlopen(base + figure, timeout=30).read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", figure
assert u.urlopen(base + "/favicon.ico", timeout=30).read().startswith(b"<svg")  # the icon is in the image
print(json.dumps({"ui": base + page, "figure": figure, "bytes": len(png)}))
EOF

# 8. the torch-free scorer serves the same model: every shard row through both scorers
step "lenscal score through scorer and scorer-onnx"
for name in scorer scorer-onnx; do
  timeout 600 "${COMPOSE[@]}" exec -T worker lenscal score --scorer "$name:50051" \
    --shards /data/demo/shards --out "/results/smoke/$name.parquet" >/dev/null
done
timeout 120 "${COMPOSE[@]}" exec -T worker python - <<'EOF'
import pandas as pd
a = pd.read_parquet("/results/smoke/scorer.parquet")
b = pd.read_parquet("/results/smoke/scorer-onnx.parquet")
assert len(a) == len(b) > 0 and (a["galaxy_id"].to_numpy() == b["galaxy_id"].to_numpy()).all()
worst = float((a["probability"] - b["probability"]).abs().max())
assert worst < 1e-4, worst
print(f"{len(a)} cutouts, largest probability difference {worst:.2e}")
EOF

# 9. training as a Docker work-pool job (the trainer image, volumes mounted)
step "train/demo_resnet (demo preset) as a container job"
timeout 1200 "${COMPOSE[@]}" exec -T worker lenscal run train/demo_resnet --param preset=demo \
  --watch --timeout-s 1100
timeout 60 "${COMPOSE[@]}" exec -T worker python - <<'EOF'
import pathlib
from lenscal.registry.store import Registry
record = Registry().get("demo_resnet")
assert record.status == "Trained", record.status
best = pathlib.Path(record.results_path) / "best"
assert (best / "model.raw.onnx").is_file(), sorted(best.iterdir())
print(f"demo_resnet: {record.status} in a trainer container -> {best}")
EOF
# 10. the postgres profile: Prefect and the registry on PostgreSQL (Debian's package, built here)
PG=(--profile postgres --env-file deploy/postgres.env)
step "the postgres profile: the stack again with Prefect and the registry on PostgreSQL"
timeout 300 "${COMPOSE[@]}" --profile onnx down --remove-orphans  # the data volumes stay
timeout 600 "${COMPOSE[@]}" "${PG[@]}" up -d --wait --wait-timeout 480
timeout 1200 "${COMPOSE[@]}" "${PG[@]}" exec -T worker lenscal run D05 --param preset=demo --watch \
  --timeout-s 1100
check_registry() {
  timeout 120 "${COMPOSE[@]}" "${PG[@]}" exec -T worker python - <<'EOF_PY'
import os, re
from lenscal.registry.store import Registry
assert os.environ["LENSCAL_REGISTRY_URL"].startswith("postgresql"), os.environ["LENSCAL_REGISTRY_URL"]
runs = [r for r in Registry().records(kind="diagnostic") if re.fullmatch(r"D05_\d{8}_demo", r.id)]
assert runs and runs[-1].status == "Complete", [(r.id, r.status) for r in runs]
print(f"{runs[-1].id}: {runs[-1].status} in the PostgreSQL registry")
EOF_PY
}
check_registry

# 11. the database restarts while a run is under way: the run waits for it and completes
step "D05 again (restart=true) with the database restarted mid-run"
timeout 60 "${COMPOSE[@]}" "${PG[@]}" exec -T worker touch /results/.smoke-second-run
timeout 1200 "${COMPOSE[@]}" "${PG[@]}" exec -T worker lenscal run D05 --param preset=demo \
  --param restart=true --watch --timeout-s 1100 &
RUN_PID=$!
for _ in $(seq 600); do  # until the run has begun its steps (a step directory exists)
  if timeout 30 "${COMPOSE[@]}" "${PG[@]}" exec -T worker sh -c \
      'find /results -path "*D05_*_demo/*/step.json" -newer /results/.smoke-second-run | grep -q .'; then
    break
  fi
  kill -0 "$RUN_PID" 2>/dev/null || break
  sleep 1
done
timeout 180 "${COMPOSE[@]}" "${PG[@]}" restart postgres
step "  postgres restarted; waiting for the run"
wait "$RUN_PID"
check_registry
step "smoke test passed"
