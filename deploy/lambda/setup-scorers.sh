#!/usr/bin/env bash
# GPU scorers on one Lambda Cloud node (Ubuntu with the NVIDIA driver): one scorer container
# per GPU, K ingest workers each, health-checked; prints the endpoint list for the clients'
# round-robin (LENSCAL_SCORER_ENDPOINTS). Run from the repository root; README: deploy/lambda.
#
#   deploy/lambda/setup-scorers.sh --model /data/checkpoints/gen5c/best [--workers 4]
#       [--bind 127.0.0.1] [--base-port 50051] [--tls-cert C --tls-key K --token-file T]
#       [--image lenscal/scorer-gpu:latest] [--dry-run]
#
# Installs what is missing: docker (Ubuntu's docker.io) and the NVIDIA container toolkit
# (NVIDIA's apt repository), then registers the toolkit with docker. Builds the GPU scorer
# image (deploy/Dockerfile, target scorer, VARIANT=gpu) when the node does not have it.
# Binding beyond loopback (--bind 0.0.0.0 or an address) requires TLS and a token: a scorer
# reachable from other machines never runs open. --dry-run prints the commands instead.
set -euo pipefail

MODEL="" WORKERS=4 BIND=127.0.0.1 BASE_PORT=50051 IMAGE=lenscal/scorer-gpu:latest
TLS_CERT="" TLS_KEY="" TOKEN_FILE="" DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --bind) BIND=$2; shift 2 ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --image) IMAGE=$2; shift 2 ;;
    --tls-cert) TLS_CERT=$2; shift 2 ;;
    --tls-key) TLS_KEY=$2; shift 2 ;;
    --token-file) TOKEN_FILE=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "unknown option: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

fail() { echo "error: $*" >&2; exit 2; }
run() { if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi; }

[ -n "$MODEL" ] || fail "--model: the checkpoint bundle directory to serve"
[ "$DRY_RUN" = 1 ] || [ -f "$MODEL/model.json" ] || fail "--model $MODEL: not a checkpoint bundle (no model.json)"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || fail "--workers $WORKERS: a positive integer"
if [ "$BIND" != 127.0.0.1 ] && [ "$BIND" != localhost ]; then
  [ -n "$TLS_CERT" ] && [ -n "$TLS_KEY" ] && [ -n "$TOKEN_FILE" ] \
    || fail "--bind $BIND exposes the scorers beyond this machine: give --tls-cert, --tls-key and --token-file"
fi
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this script is for a node with NVIDIA GPUs and driver"
GPUS=$(nvidia-smi -L | grep -c '^GPU ' || true)
[ "$GPUS" -gt 0 ] || fail "nvidia-smi lists no GPU"

# 1. docker and the NVIDIA container toolkit
if ! command -v docker >/dev/null; then
  run sudo apt-get update -q
  run sudo apt-get install -y -q docker.io
  run sudo systemctl enable --now docker
fi
if ! command -v nvidia-ctk >/dev/null; then
  keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  run bash -c "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | sudo gpg --dearmor -o $keyring"
  run bash -c "curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
    | sed 's#deb https://#deb [signed-by=$keyring] https://#' \
    | sudo tee /etc/apt/sources.list.d/nvidia-container-toolkit.list >/dev/null"
  run sudo apt-get update -q
  run sudo apt-get install -y -q nvidia-container-toolkit
  run sudo nvidia-ctk runtime configure --runtime=docker
  run sudo systemctl restart docker
fi

# 2. the image
if [ "$DRY_RUN" = 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  run docker build -f deploy/Dockerfile --target scorer --build-arg VARIANT=gpu -t "$IMAGE" .
fi

# 3. one scorer per GPU
mounts=(-v "$(cd "$MODEL" 2>/dev/null && pwd || echo "$MODEL"):/models/served:ro")
secure=()
for file in "$TLS_CERT" "$TLS_KEY" "$TOKEN_FILE"; do
  [ -n "$file" ] && mounts+=(-v "$file:/secrets/$(basename "$file"):ro")
done
[ -n "$TLS_CERT" ] && secure+=(--tls-cert "/secrets/$(basename "$TLS_CERT")" --tls-key "/secrets/$(basename "$TLS_KEY")")
[ -n "$TOKEN_FILE" ] && secure+=(--token-file "/secrets/$(basename "$TOKEN_FILE")")
# The health check speaks plain gRPC on the container's loopback only when TLS is off.
health=(--health-cmd "python -m lenscal.rpc.health 127.0.0.1:50051" --health-interval 10s --health-retries 12
        --health-start-period 120s)
[ -n "$TLS_CERT" ] && health=(--no-healthcheck)

endpoints=()
for ((gpu = 0; gpu < GPUS; gpu++)); do
  port=$((BASE_PORT + gpu))
  name="lenscal-scorer-$gpu"
  run docker rm -f "$name" >/dev/null 2>&1 || true
  run docker run -d --name "$name" --init --restart unless-stopped --gpus "device=$gpu" \
    -p "$BIND:$port:50051" "${mounts[@]}" "${health[@]}" "$IMAGE" \
    --model /models/served --host 0.0.0.0 --port 50051 --device cuda --engine torch \
    --workers "$WORKERS" "${secure[@]}"
  host=$BIND
  [ "$BIND" = 0.0.0.0 ] && host=$(hostname -I 2>/dev/null | awk '{print $1}')
  endpoints+=("${host:-127.0.0.1}:$port")
done

# 4. wait for health
if [ "$DRY_RUN" = 0 ] && [ -z "$TLS_CERT" ]; then
  for ((gpu = 0; gpu < GPUS; gpu++)); do
    for _ in $(seq 90); do
      state=$(docker inspect -f '{{.State.Health.Status}}' "lenscal-scorer-$gpu")
      [ "$state" = healthy ] && break
      [ "$state" = unhealthy ] && fail "lenscal-scorer-$gpu is unhealthy: docker logs lenscal-scorer-$gpu"
      sleep 2
    done
    [ "$state" = healthy ] || fail "lenscal-scorer-$gpu not healthy after 180 s"
  done
fi
echo "$GPUS scorer(s), $WORKERS workers each"
echo "LENSCAL_SCORER_ENDPOINTS=$(IFS=,; echo "${endpoints[*]}")"
