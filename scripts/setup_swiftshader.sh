#!/usr/bin/env bash
# Install SwiftShader (Google's software Vulkan driver) plus a Vulkan loader into
# ${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}/swiftshader/, so LiteRT's GPU accelerator
# (ML Drift over WebGPU/Dawn over Vulkan) can run .tflite models on a machine without a GPU.
# The driver comes out of Debian's chromium-common package; Chromium itself is NOT installed
# (the .deb is only downloaded and unpacked). Idempotent: exits at once when already done.
set -euo pipefail

TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}"
DEST="$TOOLS/swiftshader"
FILES=(libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1)

have_all() {
  local f
  for f in "${FILES[@]}"; do [[ -s "$DEST/$f" ]] || return 1; done
  [[ -s "$DEST/VERSION" ]]
}

if have_all; then
  echo "setup_swiftshader: already installed in $DEST ($(cat "$DEST/VERSION"))"
  exit 0
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "setup_swiftshader: needs $tool (a Debian/Ubuntu machine)" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# apt's sandbox user (_apt) must be able to write the download folder, or apt warns.
chmod 0777 "$WORK"

echo "setup_swiftshader: downloading chromium-common (.deb only, nothing is installed)"
cd "$WORK"
if ! apt-get download chromium-common >/dev/null 2>"$WORK/apt.err"; then
  # A fresh machine may have empty package lists: refresh them once and retry.
  echo "setup_swiftshader: apt-get download failed ($(tail -1 "$WORK/apt.err")); running apt-get update"
  apt-get update -q >/dev/null
  apt-get download chromium-common >/dev/null
fi
DEB="$(ls "$WORK"/chromium-common_*.deb)"
VERSION="$(dpkg-deb -f "$DEB" Version)"
echo "setup_swiftshader: unpacking chromium-common $VERSION"
dpkg-deb -x "$DEB" "$WORK/root"

SRC="$WORK/root/usr/lib/chromium"
mkdir -p "$DEST"
for f in libvk_swiftshader.so vk_swiftshader_icd.json; do
  [[ -s "$SRC/$f" ]] || { echo "setup_swiftshader: $f missing from chromium-common $VERSION" >&2; exit 1; }
  install -m 0644 "$SRC/$f" "$DEST/$f"
done
# Chromium ships its own Vulkan loader next to the driver; fall back to Debian's libvulkan1
# (downloaded and unpacked the same way) if a future package drops it.
if [[ -s "$SRC/libvulkan.so.1" ]]; then
  install -m 0644 "$SRC/libvulkan.so.1" "$DEST/libvulkan.so.1"
  LOADER="chromium-common $VERSION"
else
  echo "setup_swiftshader: chromium-common has no libvulkan.so.1; taking libvulkan1"
  apt-get download libvulkan1 >/dev/null
  LDEB="$(ls "$WORK"/libvulkan1_*.deb)"
  dpkg-deb -x "$LDEB" "$WORK/loader"
  install -m 0644 "$(readlink -f "$(ls "$WORK"/loader/usr/lib/*/libvulkan.so.1)")" "$DEST/libvulkan.so.1"
  LOADER="libvulkan1 $(dpkg-deb -f "$LDEB" Version)"
fi

# The ICD manifest names the driver relative to itself ("./libvk_swiftshader.so"); write an
# absolute path so the manifest works whatever the loader's working directory or version.
python3 - "$DEST" <<'PY'
import json, pathlib, sys
dest = pathlib.Path(sys.argv[1])
icd_path = dest / "vk_swiftshader_icd.json"
icd = json.loads(icd_path.read_text())
icd["ICD"]["library_path"] = str(dest / "libvk_swiftshader.so")
icd_path.write_text(json.dumps(icd, indent=2) + "\n")
PY

# Written last: its presence marks a complete install.
echo "chromium-common $VERSION; loader: $LOADER" > "$DEST/VERSION"
echo "setup_swiftshader: installed in $DEST ($(cat "$DEST/VERSION"))"
