#!/usr/bin/env bash
# Push an export folder (made by `export-prefix --target android`) to the Veil demo app on a phone:
#
#   android_demo/push_export.sh EXPORT_DIR [SERIAL]
#
# It lands in the app's external files dir, /sdcard/Android/data/veil.demo/files/exports/<folder name>/, which adb
# writes without root and the app reads without a permission; the app installs it into its private files dir
# (checking every artifact's size and sha256 against manifest.json) the first time it is used. Only manifest.json and
# the ExecuTorch/LiteRT artifacts it lists are pushed (no Core ML package, no parity reports). No model is in the APK.
# The export is read and checked on this side first, by the same code as every reader (ExportManifest.read), and
# pushed by the same code as `veil bench --device android --app` (toolkit/bench/android_app.py).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export_dir=${1:?usage: push_export.sh EXPORT_DIR [SERIAL]}
serial=${2:-${ANDROID_SERIAL:-}}
exec "$repo/.venv/bin/python" - "android${serial:+:$serial}" "$export_dir" <<'PY'
import sys

from toolkit.bench.android_app import push_to_app
from toolkit.errors import run_guarded

sys.exit(run_guarded("push_export.sh", lambda args: push_to_app(*args), sys.argv[1:]))
PY
