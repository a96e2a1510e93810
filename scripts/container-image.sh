#!/usr/bin/env bash
# Builds the Dockerfile with Debian's podman, as CI does (make image).
# No image registry can be reached from these machines, so the Dockerfile's base image
# (python:3.11-slim-bookworm) is made here from Debian's packages: debootstrap (minbase,
# Python 3.11, venv, CA certificates, with this machine's trust store so pip can reach
# PyPI through its egress proxy), imported under the base's name. It is cached outside
# the repository ($CMS_CACHE_DIR, else /var/cache/course-management or
# ~/.cache/course-management) and in podman's own store. The Dockerfile is built unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-moocflix/course-management:ci}
BASE=docker.io/library/python:3.11-slim-bookworm
if [ -n "${CMS_CACHE_DIR:-}" ]; then CACHE=$CMS_CACHE_DIR
elif [ "$(id -u)" -eq 0 ]; then CACHE=/var/cache/course-management
else CACHE=$HOME/.cache/course-management; fi
mkdir -p "$CACHE/container"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

need_apt=()
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
[ -x /usr/bin/fuse-overlayfs ] || need_apt+=(fuse-overlayfs)
command -v slirp4netns >/dev/null || need_apt+=(slirp4netns uidmap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "container-image: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# crun refuses this machine kind's mixed cgroups; keep ulimits within the hard limits.
export CONTAINERS_CONF=$CACHE/container/containers.conf
cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF

if ! podman image exists "$BASE"; then
  tarball=$CACHE/container/python-3.11-bookworm-rootfs.tar
  if [ ! -f "$tarball" ]; then
    echo "container-image: building the base image from Debian (debootstrap, about a minute)"
    rootfs=$(mktemp -d "$CACHE/container/rootfs.XXXX")
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/container/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/container/debootstrap.log"; exit 1; }
    $SUDO ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    $SUDO ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    $SUDO cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    $SUDO tar -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    $SUDO rm -rf "$rootfs"
  fi
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' "$tarball" "$BASE" >/dev/null
fi

echo "container-image: building $IMAGE"
podman build --network=host --format docker -q -t "$IMAGE" . >/dev/null  # docker: keeps HEALTHCHECK
podman image inspect "$IMAGE" --format '{{.Id}} {{.Size}}'
