#!/usr/bin/env bash
# Build the image; push only when asked:  docker/build.sh [--cuda INDEX_URL] [--push REGISTRY/NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 -c 'exec(open("vi_stream/_version.py").read()); print(__version__)')
tag="vi_stream:${version}"
args=()
push=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) args+=(--build-arg "TORCH_INDEX=$2"); tag="vi_stream:${version}-cuda"; shift 2 ;;
    --push) push="$2"; shift 2 ;;
    *) echo "usage: $0 [--cuda INDEX_URL] [--push REGISTRY/NAME]" >&2; exit 2 ;;
  esac
done
docker build "${args[@]}" -f docker/Dockerfile -t "$tag" .
if [ -n "$push" ]; then
  docker tag "$tag" "${push}:${tag#vi_stream:}"
  docker push "${push}:${tag#vi_stream:}"
else
  echo "built $tag (not pushed; add --push REGISTRY/NAME to push)"
fi
