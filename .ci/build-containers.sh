#!/usr/bin/env bash
# Build the bot's and the GPU worker's images (containers/) and check that each starts.
# Skipped, with a line saying so, where no container tool with a running engine is
# present. The worker image is built with the CPU PyTorch here (CI has no GPU; the CUDA
# build is the same file with TORCH_INDEX=.../whl/cuXXX).
#   .ci/build-containers.sh            # podman if present, else docker
#   CONTAINER_TOOL=docker .ci/build-containers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tool="${CONTAINER_TOOL:-}"
if [ -z "$tool" ]; then
  for candidate in podman docker; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      tool="$candidate"
      break
    fi
  done
fi
if [ -z "$tool" ]; then
  echo "build-containers: no podman or docker with a running engine here; skipped"
  exit 0
fi

tag="${IMAGE_TAG:-ci}"
echo "build-containers: building with $tool"
"$tool" build -f containers/Containerfile -t "coursebot:$tag" .
"$tool" build -f containers/Containerfile.gpu-worker \
  --build-arg TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" \
  -t "coursebot-gpu:$tag" .

# Each image starts: the bot migrates a fresh SQLite database in its volume and runs a
# scripted shell on the sample course; the worker's image has PyTorch and the CLI.
data="$(mktemp -d)"
chmod 777 "$data"
trap 'rm -rf "$data"' EXIT
"$tool" run --rm -v "$data:/data" "coursebot:$tag" db upgrade
printf 'whoami\n' | "$tool" run --rm -i -v "$data:/data" \
  -e COURSEBOT_COURSE_FILE=/app/examples/comp790-23f.yaml "coursebot:$tag" shell --strict \
  | grep -q "Role: instructor"
"$tool" run --rm --entrypoint python "coursebot-gpu:$tag" -c "import torch, bot.cli; print('torch', torch.__version__)"
"$tool" run --rm "coursebot-gpu:$tag" --help >/dev/null
echo "build-containers: coursebot:$tag and coursebot-gpu:$tag built and started"
