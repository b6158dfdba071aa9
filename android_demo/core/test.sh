#!/usr/bin/env bash
# Build and test the Android demo's Kotlin core (android_demo/core), offline:
#   1. Kotlin 1.3.31 + JUnit 5 under Maven Surefire, every artifact from Debian's Maven repository (settings.xml);
#      Surefire's "Tests run: N, Failures: F, Errors: E, Skipped: S" line is the summary CI reads.
#   2. the same sources (main and test) compiled with Kotlin 2.x, -Werror: the compiler the Android app uses
#      (android_demo/gradle/libs.versions.toml pins the same version), so a construct one of them rejects or
#      deprecates fails here, not in Android Studio.
# Needs what scripts/setup.sh installs (Debian packages, .venv for the tests that run the Python side,
# the Kotlin 2.x compiler in .cache/).
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../.. && pwd)
KOTLIN2_VERSION=$(sed -n 's/^kotlin = "\(.*\)"/\1/p' ../gradle/libs.versions.toml)
KOTLINC2="$REPO/.cache/kotlin-compiler-$KOTLIN2_VERSION/bin/kotlinc"

echo "== android_demo/core: Kotlin 1.3.31, JUnit 5, Maven Surefire (offline, Debian's Maven repository)"
mvn -B -ntp -o -U -Daether.offline.protocols=file -s settings.xml -Dmaven.repo.local="$PWD/build/m2" \
    -Dveil.repo="$REPO" test

echo "== android_demo/core: the same sources with Kotlin $KOTLIN2_VERSION (-Werror)"
if [[ ! -x "$KOTLINC2" ]]; then
  echo "test.sh: $KOTLINC2 not found; run scripts/setup.sh (make setup)" >&2
  exit 1
fi
M2=/usr/share/maven-repo
CLASSPATH="$M2/com/android/json/android-10.0.0/json-android-10.0.0.jar"
CLASSPATH+=":$M2/org/junit/jupiter/junit-jupiter-api/5.9.2/junit-jupiter-api-5.9.2.jar"
CLASSPATH+=":$M2/org/opentest4j/opentest4j/1.2.0/opentest4j-1.2.0.jar"
CLASSPATH+=":$M2/org/apiguardian/apiguardian-api/1.1.2/apiguardian-api-1.1.2.jar"
rm -rf build/kotlin2
"$KOTLINC2" -Werror -jvm-target 17 -cp "$CLASSPATH" -d build/kotlin2 src/main/kotlin src/test/kotlin
echo "Kotlin $KOTLIN2_VERSION compiled android_demo/core (main + test) without warnings"
