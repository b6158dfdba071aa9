#!/usr/bin/env bash
# The Swift tests of the iOS demo's core (ios_demo/VeilCore): `swift test` where a Swift toolchain is on the PATH
# (a Mac with Xcode 15+, or Linux with swift.org's toolchain 6.1+); elsewhere one line saying they were not run.
# What runs everywhere instead: ios_demo/check_sources.py's static checks, in pytest (tests/test_ios_sources.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null 2>&1; then
  echo "needs-swift: Swift tests NOT run (ios_demo/VeilCore: swift test): no Swift toolchain on this machine;" \
       "the static checks of the Swift sources run in pytest (tests/test_ios_sources.py)"
  exit 0
fi
echo "== ios_demo/VeilCore: swift test ($(swift --version 2>&1 | head -n 1))"
cd ios_demo/VeilCore
VEIL_REPO="$(cd ../.. && pwd)" swift test
