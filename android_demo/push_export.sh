#!/usr/bin/env bash
# Push an export folder (made by `export-prefix --target android`) to the Veil demo app on a phone:
#
#   android_demo/push_export.sh EXPORT_DIR [SERIAL]
#
# It lands in the app's external files dir, /sdcard/Android/data/veil.demo/files/exports/<folder name>/, which adb
# writes without root and the app reads without a permission; the app installs it into its private files dir
# (checking every artifact's size and sha256 against manifest.json) the first time it is used. Only manifest.json and
# the ExecuTorch/LiteRT artifacts it lists are pushed (no Core ML package, no parity reports). No model is in the APK.
set -euo pipefail
PACKAGE=veil.demo
export_dir=${1:?usage: push_export.sh EXPORT_DIR [SERIAL]}
serial=${2:-${ANDROID_SERIAL:-}}
adb=(adb)
[[ -n $serial ]] && adb+=(-s "$serial")
manifest="$export_dir/manifest.json"
[[ -f $manifest ]] || { echo "push_export.sh: $export_dir: no manifest.json (not an export folder)" >&2; exit 2; }
command -v adb >/dev/null || { echo "push_export.sh: adb not found (install Android platform-tools)" >&2; exit 2; }
"${adb[@]}" shell pm path "$PACKAGE" >/dev/null 2>&1 || {
  echo "push_export.sh: $PACKAGE is not installed; install the app first (android_demo/README.md)" >&2; exit 2; }

name=$(basename "$(cd "$export_dir" && pwd)")
remote=/sdcard/Android/data/$PACKAGE/files/exports/$name
files=$(python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for a in m["artifacts"]:
    if a["backend"] in ("executorch", "litert"):
        print(a["file"])
PY
)
[[ -n $files ]] || { echo "push_export.sh: $manifest lists no ExecuTorch or LiteRT artifact" >&2; exit 2; }
"${adb[@]}" shell mkdir -p "$remote"
while IFS= read -r f; do
  [[ -f $export_dir/$f ]] || { echo "push_export.sh: $export_dir/$f listed in manifest.json is missing" >&2; exit 2; }
  "${adb[@]}" push "$export_dir/$f" "$remote/$f"
done <<< "$files"
# the manifest last: the app never sees a manifest whose artifacts are still on their way
"${adb[@]}" push "$manifest" "$remote/manifest.json"
echo "pushed $export_dir to $remote; in the app: Refresh exports, pick '$name'"
