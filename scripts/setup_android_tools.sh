#!/usr/bin/env bash
# Installs the tools that build and test the Android runner app on Linux without Gradle:
# a JDK, JUnit 4, aapt2/zipalign/apksigner/dexdump from Debian 12, and android.jar (API 23) plus
# dx from Debian 11 packages (fetched with `apt-get download` through a private bullseye sources
# list, never added to the system's sources), and a debug keystore for signing.
# Idempotent: exits fast when everything is already in place. Tools land in
# ${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}/android (see ../android_app/README.md).
set -euo pipefail

TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}"
ANDROID="$TOOLS/android"
STAMP="$ANDROID/.ready-v2"
APT_PKGS=(default-jdk-headless junit4 aapt zipalign apksigner dexdump zip)

log() { printf '[setup_android_tools] %s\n' "$*"; }

have_all() {
  [[ -f "$STAMP" && -f "$ANDROID/android.jar" && -f "$ANDROID/dx.jar" && -f "$ANDROID/debug.keystore" ]] || return 1
  local t
  for t in javac java keytool aapt2 zipalign apksigner dexdump zip; do
    command -v "$t" >/dev/null 2>&1 || return 1
  done
  [[ -f /usr/share/java/junit4.jar && -f /usr/share/java/hamcrest-core.jar ]] || return 1
}

if have_all; then
  log "already installed in $ANDROID"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# apt-get can collide with another engineer/CI step holding the dpkg lock: wait for it.
apt_retry() {
  local i
  for i in $(seq 1 30); do
    if $SUDO "$@"; then return 0; fi
    log "apt busy or failed (try $i/30), retrying in 5 s: $*"
    sleep 5
  done
  return 1
}

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  if ! apt-cache show aapt >/dev/null 2>&1; then
    apt_retry apt-get update -q
  fi
  DEBIAN_FRONTEND=noninteractive apt_retry apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

mkdir -p "$ANDROID"

# android.jar (API 23) and dx exist only in Debian 11. A private apt state keeps bullseye out of
# the system's sources: only these two .debs are downloaded and unpacked into $ANDROID.
if [[ ! -f "$ANDROID/android.jar" || ! -f "$ANDROID/dx.jar" ]]; then
  BULL="$ANDROID/bullseye-apt"
  mkdir -p "$BULL/lists/partial" "$BULL/cache/archives/partial" "$BULL/debs" "$BULL/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" >"$BULL/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$BULL/sources.list" -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$BULL/lists" -o "Dir::Cache=$BULL/cache"
            -o "Debug::NoLocking=1")
  log "fetching bullseye package lists into $BULL"
  apt-get "${APT_OPTS[@]}" update -q
  log "downloading libandroid-23-java and dalvik-exchange (Debian 11)"
  (cd "$BULL/debs" && apt-get "${APT_OPTS[@]}" download libandroid-23-java dalvik-exchange)
  for deb in "$BULL"/debs/*.deb; do
    dpkg-deb -x "$deb" "$BULL/root"
  done
  jar_android=$(find "$BULL/root" -name android.jar | head -n1)
  jar_dx=$(find "$BULL/root" -name 'dx*.jar' | head -n1)
  if [[ -z "$jar_android" || -z "$jar_dx" ]]; then
    log "ERROR: android.jar or dx.jar not found in the unpacked Debian 11 packages under $BULL/root"
    exit 1
  fi
  cp "$jar_android" "$ANDROID/android.jar"
  cp "$jar_dx" "$ANDROID/dx.jar"
  rm -rf "$BULL"
fi

# The Android debug keystore convention (alias androiddebugkey, password android): an APK signed
# with it installs on any device with USB debugging, which is all a debug build needs.
if [[ ! -f "$ANDROID/debug.keystore" ]]; then
  log "creating debug keystore"
  keytool -genkeypair -keystore "$ANDROID/debug.keystore" -storepass android -keypass android \
    -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 \
    -dname "CN=Android Debug,O=Android,C=US" -noprompt >/dev/null
fi

for t in javac java keytool aapt2 zipalign apksigner dexdump zip; do
  command -v "$t" >/dev/null 2>&1 || { log "ERROR: $t not on PATH after install"; exit 1; }
done
touch "$STAMP"
log "ready: $ANDROID (android.jar, dx.jar, debug.keystore)"
