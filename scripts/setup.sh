#!/usr/bin/env bash
# Install everything Veil needs on a fresh Debian machine with Python 3.11: the Debian TTS voices and text
# used to synthesize the default corpus, then a virtual environment at .venv with the pinned Python stack.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsndfile1
                 fortunes fortunes-min)
# nginx: tests/test_serve_proxy.py runs deploy/nginx.conf, the reverse proxy of docs/SERVE.md, in front of veil serve
DEBIAN_PACKAGES+=(nginx)
# The Android demo's Kotlin core (android_demo/core) builds offline against Debian's own Maven repository
# (/usr/share/maven-repo): Kotlin 1.3.31 with its Maven plugin, JUnit 5 under Surefire, the Maven plugins the
# build runs, kotlinx-coroutines (a kotlin-maven-plugin dependency) and AOSP's org.json (what Android ships).
DEBIAN_PACKAGES+=(openjdk-17-jdk-headless maven kotlin junit5 libsurefire-java libmaven-resources-plugin-java
                  libmaven-compiler-plugin-java libmaven-jar-plugin-java libkotlinx-coroutines-java
                  libandroid-json-java)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(npm)  # fetches the Kotlin 2.x compiler below
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # the tests run their own nginx on 127.0.0.1; where an init system started the packaged one (port 80, every
  # interface), stop it and keep it off
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# Kotlin 2.x, the compiler of the Android app (android_demo/gradle/libs.versions.toml), from the npm registry's
# kotlin-compiler package (JetBrains' compiler distribution): android_demo/core/test.sh compiles the core with it too.
KOTLIN2_VERSION=$(sed -n 's/^kotlin = "\(.*\)"/\1/p' android_demo/gradle/libs.versions.toml)
KOTLIN2_DIR=.cache/kotlin-compiler-$KOTLIN2_VERSION
if [[ ! -x $KOTLIN2_DIR/bin/kotlinc ]]; then
  echo "setup: fetching the Kotlin $KOTLIN2_VERSION compiler (npm package kotlin-compiler)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN2_VERSION" >/dev/null && tar xzf kotlin-compiler-*.tgz)
  mkdir -p .cache
  rm -rf "$KOTLIN2_DIR"
  mv "$tmp/package" "$KOTLIN2_DIR"
  rm -rf "$tmp"
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: it is the CPU wheel; an unpinned resolve would fetch a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,ray]"
.venv/bin/python - <<'PY'
from importlib.metadata import version
print("setup: done (" + ", ".join(f"{p} {version(p)}" for p in ("torch", "executorch", "litert-torch", "coremltools")) + ")")
PY
