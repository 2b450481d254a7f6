#!/usr/bin/env bash
# Build (once) and print the path of the tools that check deploy/: kustomize and promtool.
#
#   bash deploy/tools/ensure.sh kustomize      -> ~/.cache/sagesf/bin/kustomize-v5.8.2
#   bash deploy/tools/ensure.sh promtool       -> ~/.cache/sagesf/bin/promtool-v0.316.0
#
# Both come from the Go module proxy (`go install`, the machine's Go toolchain), into the
# per-machine cache shared by every clone (SAGESF_CACHE_DIR, else $XDG_CACHE_HOME/sagesf, else
# ~/.cache/sagesf), so only the first run builds: kustomize takes about 2 minutes on 2 cores,
# promtool longer. promtool is built with the `remove_all_sd` tag: the service-discovery plugins
# (cloud SDKs) are what makes a full build slow, and checking rules and a static scrape
# configuration needs none of them. `make setup` runs this; the tests in tests/deploy/ too, when
# a tool is missing. Bump a version here and the next run builds the new one beside the old.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.2      # sigs.k8s.io/kustomize/kustomize/v5
PROMETHEUS_VERSION=v0.316.0   # github.com/prometheus/prometheus: the Go module tag of Prometheus 3.16.0

# Go's official install location, for shells whose PATH lacks it
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi

cache="${SAGESF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sagesf}"
bin="$cache/bin"
mkdir -p "$bin"

build() { # name version package [go build tags]
  local name=$1 version=$2 package=$3 tags=${4:-}
  local target="$bin/$name-$version"
  if [ ! -x "$target" ]; then
    command -v go >/dev/null || { echo "Go is needed once to build $name (apt-get install golang, or go.dev)" >&2; exit 1; }
    local work
    work=$(mktemp -d "$bin/.build-$name.XXXXXX")
    echo "building $name $version from the Go module proxy (once per machine) ..." >&2
    # GOTOOLCHAIN=local: use this machine's Go, never download another one
    GOTOOLCHAIN=local GOBIN="$work" GOFLAGS="${tags:+-tags=$tags}" go install "$package@$version" >&2
    mv "$work/$name" "$target"
    rmdir "$work"
  fi
  echo "$target"
}

for tool in "$@"; do
  case "$tool" in
    kustomize) build kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 ;;
    promtool) build promtool "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool remove_all_sd ;;
    *) echo "unknown tool: $tool (kustomize, promtool)" >&2; exit 2 ;;
  esac
done
