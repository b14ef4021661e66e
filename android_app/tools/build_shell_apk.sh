#!/usr/bin/env bash
# Builds the app shell into a signed debug APK with Debian's tools, without Gradle:
# aapt2 compile/link -> javac (Java 8, against API 23's android.jar) -> dx -> zip -> zipalign
# -> apksigner sign, then checks it with `apksigner verify` and `aapt2 dump badging`.
# The APK holds the real Activity (settings, start/stop, progress, results) and bench-core,
# but no ML runtime: LiteRT/ONNX Runtime/ExecuTorch are AARs that only Gradle can bundle, so
# this APK turns every artifact into an error report saying so (see README.md).
#
# Usage: android_app/tools/build_shell_apk.sh OUT_DIR   (tools from scripts/setup_android_tools.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: build_shell_apk.sh OUT_DIR}"
TOOLS="${FREENET_TOOLS:-$HOME/.cache/freenet-deploy}/android"
ANDROID_JAR="$TOOLS/android.jar"
DX_JAR="$TOOLS/dx.jar"
KEYSTORE="$TOOLS/debug.keystore"
PACKAGE="dev.freenet.bench"
MIN_SDK=23

log() { printf '[build_shell_apk] %s\n' "$*"; }

for f in "$ANDROID_JAR" "$DX_JAR" "$KEYSTORE"; do
  [[ -f "$f" ]] || { log "ERROR: $f missing: run scripts/setup_android_tools.sh"; exit 1; }
done
for t in aapt2 javac java zip zipalign apksigner; do
  command -v "$t" >/dev/null || { log "ERROR: $t not on PATH: run scripts/setup_android_tools.sh"; exit 1; }
done

# The app version comes from app/build.gradle.
GRADLE="$HERE/app/build.gradle"
VERSION_CODE=$(sed -n 's/^ *versionCode *\([0-9]*\).*/\1/p' "$GRADLE" | head -n1)
VERSION_NAME=$(sed -n 's/^ *versionName *"\([^"]*\)".*/\1/p' "$GRADLE" | head -n1)
# The SDK levels live in the version catalog, like every other version.
TARGET_SDK=$(sed -n 's/^targetSdk *= *"\([0-9]*\)".*/\1/p' "$HERE/gradle/libs.versions.toml" | head -n1)
[[ -n "$VERSION_CODE" && -n "$VERSION_NAME" && -n "$TARGET_SDK" ]] || {
  log "ERROR: cannot read versionCode/versionName/targetSdk from $GRADLE"; exit 1; }

mkdir -p "$OUT"
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/freenet-apk.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$BUILD/gen" "$BUILD/classes"

# AGP takes the package from the Gradle namespace; aapt2 needs it in the manifest.
sed "0,/<manifest /s//<manifest package=\"$PACKAGE\" /" "$HERE/app/src/main/AndroidManifest.xml" \
  >"$BUILD/AndroidManifest.xml"

log "aapt2 compile + link (version $VERSION_NAME/$VERSION_CODE, min SDK $MIN_SDK, target SDK $TARGET_SDK)"
aapt2 compile --dir "$HERE/app/src/main/res" -o "$BUILD/res.zip"
aapt2 link -o "$BUILD/unsigned.apk" -I "$ANDROID_JAR" \
  --manifest "$BUILD/AndroidManifest.xml" --java "$BUILD/gen" \
  --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" \
  --version-code "$VERSION_CODE" --version-name "$VERSION_NAME" \
  "$BUILD/res.zip"

log "javac (Java 8, bootclasspath = API $MIN_SDK android.jar: catches any newer API use)"
find "$HERE/bench-core/src/main/java" "$HERE/app/src/main/java" "$BUILD/gen" -name '*.java' \
  >"$BUILD/sources.txt"
javac -source 8 -target 8 -Xlint:-options -encoding UTF-8 \
  -bootclasspath "$ANDROID_JAR" -d "$BUILD/classes" @"$BUILD/sources.txt"

log "dx --dex"
java -jar "$DX_JAR" --dex --min-sdk-version="$MIN_SDK" --output="$BUILD/classes.dex" "$BUILD/classes"

(cd "$BUILD" && zip -q -X unsigned.apk classes.dex)
zipalign -p -f 4 "$BUILD/unsigned.apk" "$BUILD/aligned.apk"
APK="$OUT/freenet-bench-shell-debug.apk"
apksigner sign --ks "$KEYSTORE" --ks-pass pass:android --key-pass pass:android \
  --ks-key-alias androiddebugkey --out "$APK" "$BUILD/aligned.apk"
rm -f "$APK.idsig"

log "apksigner verify"
apksigner verify --verbose "$APK"
log "aapt2 dump badging"
aapt2 dump badging "$APK"
log "built $APK"
