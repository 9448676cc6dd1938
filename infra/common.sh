# Shared helpers for the infra scripts: paths, messages, waiting for a TCP port.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${SPANSTREAM_DATA_DIR:-$ROOT/.data}

say() { echo "[infra] $*"; }
die() { echo "[infra] ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Installs Debian packages when we may (root), else says exactly what to run.
ensure_packages() {
  local missing=("$@")
  if [ "$(id -u)" != 0 ]; then
    die "missing ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}' and try again"
  fi
  say "installing ${missing[*]} from Debian's packages"
  apt-get update -qq >/dev/null || die "apt-get update failed; check the package mirror"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}
