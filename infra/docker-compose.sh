#!/usr/bin/env bash
# Makes `docker compose config` available to validate docker-compose.yml. These machines have the
# Docker client but neither an engine nor the compose plugin, and Debian ships only compose v1;
# compose v2 is a Go module, so it is built with go into the CLI's plugin directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

COMPOSE_VERSION=v2.40.3
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

command -v docker >/dev/null || ensure_packages docker.io
if docker compose version >/dev/null 2>&1; then exit 0; fi
command -v go >/dev/null || die "docker compose is missing and Go is not installed to build it"
say "building docker compose $COMPOSE_VERSION from its Go module (first run takes a few minutes)"
# `go install pkg@version` refuses modules whose go.mod has replace/exclude directives, as
# compose's does: fetch the module through the proxy and build it as the main module instead.
build=$(mktemp -d)
source_dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$source_dir" ] || die "go mod download of docker compose $COMPOSE_VERSION failed"
cp -r "$source_dir" "$build/src" && chmod -R u+w "$build/src"
(cd "$build/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$build/cmd" ./cmd) \
  || die "building docker compose $COMPOSE_VERSION failed"
mkdir -p "$PLUGIN_DIR"
mv "$build/cmd" "$PLUGIN_DIR/docker-compose"
rm -rf "$build"
docker compose version
