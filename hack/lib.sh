# Shared by hack/up and hack/test: installs every prerequisite, never by hand.

# The runtime (runc under conmon, CNI plugins, nftables/iptables for port mappings, catatonit as
# PID 1 of pods that share their PID namespace), the local registry, etcd (the scale-out store,
# tested against the real server) and the tools that build the stand-in images from Debian packages.
APT_PACKAGES="python3 python3-venv python3-dev gcc ca-certificates curl iproute2 util-linux runc conmon
  containernetworking-plugins nftables iptables catatonit busybox-static docker-registry mmdebstrap
  etcd-server etcd-client"
IMAGE_CACHE=/var/cache/tinykube-test-images

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_runtime() {
  # shellcheck disable=SC2086
  apt_install $APT_PACKAGES
  command -v kubectl >/dev/null || { echo "kubectl is required (our machines ship it)" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import tinykube.cli.main' || { echo "tinykube failed to install" >&2; exit 1; }
}

install_test() {
  install_runtime
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
  # busybox and nginx stand-ins, built once from Debian packages and cached
  hack/build-test-images "$IMAGE_CACHE" >/dev/null
}
