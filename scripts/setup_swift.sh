#!/usr/bin/env bash
# Installs a Swift 6 toolchain for building and testing the iOS app core (ios_app/BenchCore) on Linux.
#
# Debian 12 has no Swift compiler and Debian 13's `swiftlang` needs glibc 2.38, so Swift lives in a
# Debian 13 (trixie) minbase chroot under ${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}/swift-chroot
# (see docs/TOOLCHAIN.md "Swift (iOS app core) on Linux"). Idempotent: every step leaves a marker and
# is skipped when done; the mounts are re-established on every run because they do not survive a
# reboot. ~3 minutes and ~3.2 GB the first time, about a second afterwards.
#
# Usage:
#   scripts/setup_swift.sh           install (or repair) the chroot and its mounts
#   scripts/setup_swift.sh --check   exit 0 when `swift` runs in the chroot, 1 otherwise (no changes)
#   scripts/setup_swift.sh --print-root   print the chroot path
#   scripts/setup_swift.sh --umount  unmount /proc from the chroot (do this before deleting it)
# Must run as root (debootstrap, mount, chroot).
set -euo pipefail

TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}"
ROOT="$TOOLS/swift-chroot"
SUITE=trixie
PACKAGES=(swiftlang libc6-dev)

log() { printf '[setup_swift] %s\n' "$*"; }
die() { printf '[setup_swift] ERROR: %s\n' "$*" >&2; exit 1; }

# The Debian mirror exactly as this machine's apt is configured (the network only reaches Debian's
# registry through it); FREENET_DEBIAN_MIRROR overrides, deb.debian.org is the last resort.
debian_mirror() {
  if [[ -n "${FREENET_DEBIAN_MIRROR:-}" ]]; then echo "$FREENET_DEBIAN_MIRROR"; return; fi
  local uri
  uri="$( { grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | awk '{for (i = 2; i <= NF; i++) print $i}';
            grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | sed -E 's/\[[^]]*\]//' | awk '{print $2}'; } \
          | grep -E '/debian/?$' | head -n1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

swift_works() {
  # /usr/bin/swift is an absolute symlink into the chroot's /usr/libexec, so test it from inside.
  [[ -e "$ROOT/usr/libexec/swift/bin/swift" ]] && mountpoint -q "$ROOT/proc" \
    && chroot "$ROOT" /usr/bin/swift --version >/dev/null 2>&1
}

mount_all() {
  # swift needs /proc (the driver reads /proc/self/exe; the test runner reads /proc/self/fd).
  # /dev is NOT bind-mounted: debootstrap already created null, zero, (u)random, tty and ptmx
  # nodes in the chroot, and a bind mount of the host's /dev would let an `rm -rf` of the tools
  # folder delete the host's device nodes.
  mkdir -p "$ROOT/proc" "$ROOT/tmp"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  chmod 1777 "$ROOT/tmp"
}

umount_all() {
  local m
  for m in "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/proc"; do
    if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
  done
}

case "${1:-}" in
  --check)
    if swift_works; then log "ok: $(chroot "$ROOT" /usr/bin/swift --version 2>&1 | head -n1)"; exit 0; fi
    log "Swift chroot missing or not mounted at $ROOT; run: bash scripts/setup_swift.sh"
    exit 1 ;;
  --print-root) echo "$ROOT"; exit 0 ;;
  --umount) umount_all; log "unmounted $ROOT"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (use --check, --print-root or --umount)" ;;
esac

[[ "$(id -u)" == 0 ]] || die "must run as root (debootstrap, mount and chroot need it)"

if [[ -f "$ROOT/.freenet-swift-ready" ]]; then
  mount_all
  # Resolver settings may change between boots; apt inside the chroot is not used again, but keep
  # the copy fresh for someone who installs extra packages by hand.
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  swift_works || die "chroot at $ROOT is marked ready but swift does not run; delete it (after --umount) and re-run"
  log "already installed: $(chroot "$ROOT" /usr/bin/swift --version 2>&1 | head -n1)"
  exit 0
fi

MIRROR="$(debian_mirror)"
log "chroot: $ROOT  mirror: $MIRROR  suite: $SUITE"

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  # Other setup scripts may be running apt at the same time: wait for the dpkg lock, not fail.
  apt_host=(apt-get -o DPkg::Lock::Timeout=600)
  "${apt_host[@]}" install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { "${apt_host[@]}" update >/dev/null && "${apt_host[@]}" install -y --no-install-recommends debootstrap; }
fi

if [[ ! -f "$ROOT/.freenet-debootstrap-done" ]]; then
  if [[ -e "$ROOT" ]]; then
    # A half-finished debootstrap cannot be resumed reliably: unmount and start over.
    log "removing incomplete chroot $ROOT"
    umount_all
    rm -rf --one-file-system "$ROOT"
  fi
  mkdir -p "$TOOLS"
  log "debootstrap $SUITE (minbase) - about 1-2 minutes"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR"
  touch "$ROOT/.freenet-debootstrap-done"
fi

# Same apt behaviour as the host (e.g. a snapshot mirror needs Check-Valid-Until false).
for f in /etc/apt/apt.conf.d/99*; do [[ -f "$f" ]] && cp "$f" "$ROOT/etc/apt/apt.conf.d/"; done
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount_all

log "apt-get install ${PACKAGES[*]} in the chroot - about 1-2 minutes"
chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -q
chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
chroot "$ROOT" apt-get clean

swift_works || die "swift was installed but does not run in $ROOT"
touch "$ROOT/.freenet-swift-ready"
log "ready: $(chroot "$ROOT" /usr/bin/swift --version 2>&1 | head -n1)"
