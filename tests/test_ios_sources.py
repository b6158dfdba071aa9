"""The iOS demo's Swift sources, checked without a Swift compiler (none exists here): every check of
ios_demo/check_sources.py passes on the tree, and each one catches a violation planted in a copy of it. Also the
`make test` step for the Swift tests (scripts/swift_tests.sh: `needs-swift` without a toolchain, `swift test` with
one) and the benchmark's log line as toolkit/bench/phones.py parses it."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.bench import phones

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_sources", REPO / "ios_demo" / "check_sources.py")
check_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_sources)

CORE = "ios_demo/VeilCore/Sources/VeilCore"
TESTS = "ios_demo/VeilCore/Tests/VeilCoreTests"


@pytest.mark.parametrize("name", list(check_sources.CHECKS))
def test_the_swift_sources_pass_the_static_check(name):
    assert check_sources.CHECKS[name](REPO) == []


def test_the_checks_see_the_whole_mirror():
    """Not vacuous: the checks compare what the two cores actually contain."""
    pairs = check_sources.mirrored_pairs(REPO)
    assert len(pairs) >= 30 and all((REPO / swift).is_file() for _, swift in pairs)
    kotlin_tests = sum(len(check_sources.kotlin_tests(REPO / k)) for k, _ in pairs if k.suffix == ".kt")
    assert kotlin_tests >= 40
    assert len(check_sources.refusals(REPO / CORE / "PayloadCodec.swift")) >= 20
    assert len(check_sources.put_keys(REPO / CORE / "BenchSchema.swift")) >= 100
    assert len(check_sources.error_table(REPO / CORE / "Protocol.swift")) == 19
    keys = set().union(*(check_sources.accessor_keys(p) for p in (REPO / TESTS).glob("*.swift")))
    assert {"chunker", "fp16", "int8", "vq", "errors", "frames", "sessions", "scenarios", "scales_f32_bits",
            "resource:export-manifest.json"} <= keys


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of what the checks read: ios_demo, the Kotlin core's sources and tests, the vectors' index."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "ios_demo", root / "ios_demo", ignore=shutil.ignore_patterns(".build", "*.xcodeproj"))
    shutil.copytree(REPO / "android_demo/core/src", root / "android_demo/core/src")
    (root / "testvectors").mkdir()
    shutil.copy(REPO / "testvectors/index.json", root / "testvectors/index.json")
    return root


def _edit(root: Path, rel: str, old: str, new: str, count: int = 1) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{rel}: {old!r} not found"
    path.write_text(text.replace(old, new, count))


PLANTED = {
    "syntax": (lambda r: _edit(r, f"{CORE}/Chunker.swift", "return out\n    }", "return out\n"),
               "Chunker.swift"),
    "mirrors": (lambda r: (r / CORE / "Codebook.swift").unlink(), "Codebook.kt has no Swift mirror"),
    "tests": (lambda r: _edit(r, f"{TESTS}/Fp16Test.swift", "func testHalfwayBetweenTwoHalvesRoundsToTheEvenOne",
                              "func halfwayCase"), "testHalfwayBetweenTwoHalvesRoundsToTheEvenOne"),
    "vector keys": (lambda r: _edit(r, f"{TESTS}/CrossLanguageVectorsTest.swift", '"scales_f32_bits"', '"scales"'),
                    "'scales_f32_bits'"),
    "refusals": (lambda r: _edit(r, f"{CORE}/PayloadCodec.swift", 'PayloadException("nonzero_aux"',
                                 'PayloadException("bad_index_width"'), "nonzero_aux"),
    "error codes": (lambda r: _edit(r, f"{CORE}/Protocol.swift", 'ErrorCode(4430, "token_busy", 429',
                                    'ErrorCode(4430, "token_busy", 503'), "ErrorCodes.ALL differs"),
    "bench keys": (lambda r: _edit(r, f"{CORE}/BenchSchema.swift", 'o.put("p90_ms"', 'o.put("p95_ms"'), "'p95_ms'"),
    "float16": (lambda r: _edit(r, f"{CORE}/Fp16.swift", "public enum Fp16 {",
                                "public enum Fp16 {\n    static let one: Float16 = 1"), "Float16 is unavailable"),
    "rounding": (lambda r: _edit(r, f"{CORE}/PayloadCodec.swift", "/ safe).rounded(.toNearestOrEven)", "/ safe).rounded()"),
                 "rounds half away from zero"),
    "imports": (lambda r: _edit(r, f"{CORE}/URLSessionTransport.swift",
                                "#if canImport(FoundationNetworking)\nimport FoundationNetworking\n#endif",
                                "import FoundationNetworking\nimport CoreML"), "import FoundationNetworking must sit"),
    "package": (lambda r: _edit(r, "ios_demo/VeilCore/Package.swift", "swift-tools-version:5.9", "swift-tools-version:5.5"),
                "swift-tools-version:5.9"),
    "traceability": (lambda r: _edit(r, "ios_demo/TRACEABILITY.md", "| `Fp16.kt` | `Fp16.swift` |\n", ""),
                     "TRACEABILITY.md is not what the tree gives"),
    "app": (lambda r: _edit(r, "ios_demo/VeilDemo/Sources/AudioCapture.swift", "format: format)",
                            "format: target)"), "not the input node's output bus format"),
    "test imports": (lambda r: _edit(r, f"{TESTS}/TestFiles.swift", "import VeilCore\n", ""),
                     "uses IllegalStateException from VeilCore without `import VeilCore`"),
    "corelibs": (lambda r: _edit(r, f"{CORE}/URLSessionTransport.swift", "#if canImport(Darwin) || compiler(>=6.1)",
                                 "#if canImport(Darwin) || compiler(>=5.9)", count=2),
                 "a completion-handler WebSocket call outside"),
}


# The review's iOS build blockers, each put back into a copy of the file: the check that catches it.
BLOCKERS = {
    "SWIFT_VERSION 5.9": ("app", lambda r: _edit(r, "ios_demo/VeilDemo/project.yml", 'SWIFT_VERSION: "5.0"',
                                                   'SWIFT_VERSION: "5.9"'), "SWIFT_VERSION is '5.9'"),
    "callback WebSocket send/receive unguarded": (
        "corelibs", lambda r: _edit(r, f"{CORE}/URLSessionTransport.swift",
                                    "#if canImport(Darwin) || compiler(>=6.1)\n        task.send(",
                                    "#if canImport(Darwin)\n        task.send("),
        "URLSessionTransport.swift"),
    "TestFiles.swift without import VeilCore": (
        "test imports", lambda r: _edit(r, f"{TESTS}/TestFiles.swift", "import VeilCore\n", ""), "TestFiles.swift"),
    "tap at inputFormat(forBus: 0)": (
        "app", lambda r: _edit(r, "ios_demo/VeilDemo/Sources/AudioCapture.swift",
                               "let format = input.outputFormat(forBus: 0)", "let format = input.inputFormat(forBus: 0)"),
        "not the input node's output bus format"),
    "permission completion handler": (
        "app", lambda r: _edit(r, "ios_demo/VeilDemo/Sources/SessionModel.swift",
                               "let granted = await AVAudioApplication.requestRecordPermission()",
                               "AVAudioApplication.requestRecordPermission { granted in }; let granted = true"),
        "await requestRecordPermission()"),
    "no local network usage text": (
        "app", lambda r: _edit(r, "ios_demo/VeilDemo/project.yml", "NSLocalNetworkUsageDescription", "NSLocalNetwork"),
        "no NSLocalNetworkUsageDescription"),
}


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_each_ios_build_blocker_put_back_is_caught(tree, blocker):
    check, plant, expected = BLOCKERS[blocker]
    assert check_sources.CHECKS[check](tree) == [], "the copy starts clean"
    plant(tree)
    problems = check_sources.CHECKS[check](tree)
    assert problems and any(expected in p for p in problems), problems


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_check_catches_a_planted_violation(tree, name):
    assert check_sources.CHECKS[name](tree) == [], "the copy starts clean"
    plant, expected = PLANTED[name]
    plant(tree)
    problems = check_sources.CHECKS[name](tree)
    assert problems and any(expected in p for p in problems), problems


def test_apple_frameworks_are_refused_in_veilcore_but_not_in_the_app(tree):
    _edit(tree, f"{CORE}/Chunker.swift", "import Foundation\n", "import Foundation\nimport AVFoundation\n")
    assert any("import AVFoundation: an Apple-only framework in VeilCore" in p
               for p in check_sources.check_imports(tree))
    assert "import AVFoundation" in (tree / "ios_demo/VeilDemo/Sources/AudioCapture.swift").read_text()


def test_a_refusal_moved_out_of_order_is_caught(tree):
    """Same reasons, another order: the checks run in the spec's order, so order matters."""
    path = tree / CORE / "PayloadCodec.swift"
    text = path.read_text()
    a = text.index('        if codec == .vq && magic == MAGIC_V1 {')
    b = text.index('        let aux = Int(message[5])')
    moved = text[a:b]
    text = text[:a] + text[b:]
    c = text.index('        var buf = ByteReader(message, 6)')
    path.write_text(text[:c] + moved + text[c:])
    assert any("codec_not_in_version" in p for p in check_sources.check_refusals(tree))


def test_swift_tests_step_says_needs_swift_without_a_toolchain(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "head"):
        os.symlink(shutil.which(tool), bindir / tool)
    out = subprocess.run(["/bin/bash", str(REPO / "scripts/swift_tests.sh")], capture_output=True, text=True,
                         env={"PATH": str(bindir)}, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("needs-swift: Swift tests NOT run") and out.stdout.count("\n") == 1


def test_swift_tests_step_runs_swift_test_where_swift_exists(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "head"):
        os.symlink(shutil.which(tool), bindir / tool)
    log = tmp_path / "swift.log"
    swift = bindir / "swift"
    swift.write_text(f"#!/bin/sh\necho \"$PWD $* VEIL_REPO=$VEIL_REPO\" >> {log}\n"
                     "[ \"$1\" = --version ] && echo 'Swift version 6.0' ; exit 0\n")
    swift.chmod(0o755)
    out = subprocess.run(["/bin/bash", str(REPO / "scripts/swift_tests.sh")], capture_output=True, text=True,
                         env={"PATH": str(bindir)}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "== ios_demo/VeilCore: swift test (Swift version 6.0)" in out.stdout
    assert f"{REPO}/ios_demo/VeilCore test VEIL_REPO={REPO}" in log.read_text()


def test_the_benchmark_marker_line_is_what_ios_log_parses():
    """The `veil-bench:` fields as VeilPrefixBenchTests.swift writes them, through phones.parse_xctest_log."""
    keys = check_sources.marker_keys(REPO)
    assert keys[:5] == ["case", "artifact", "compute_units", "device", "os"]
    assert {"load_ms", "first_inference_ms", "compile_ms", "warm_p50_ms"} <= set(keys)
    values = {"case": "testPrefixAll", "artifact": "p.mlpackage", "compute_units": "all", "device": "iPhone15,2",
              "os": "17.5.1", "iterations": "50"}
    marker = " ".join(f"{k}={values.get(k, '12.5')}" for k in keys)
    log = ("Test Case '-[VeilBenchTests.VeilPrefixBenchTests testPrefixAll]' started.\n"
           f"2026-01-21 09:50:53.852 xctest[812:40123] veil-bench: {marker}\n"
           "Test Case '-[VeilBenchTests.VeilPrefixBenchTests testPrefixAll]' measured [Clock Monotonic Time, s] "
           "average: 0.012, relative standard deviation: 1.0%, values: [0.011000, 0.012000, 0.013000], "
           "performanceMetricID:com.apple.dt.XCTMetric_Clock.time.monotonic\n"
           "Test Case '-[VeilBenchTests.VeilPrefixBenchTests testPrefixAll]' passed (1.234 seconds).\n")
    parsed = phones.parse_xctest_log(log)
    test = parsed["tests"]["VeilBenchTests.VeilPrefixBenchTests.testPrefixAll"]
    m = phones.measurement_from_xctest(test, 2.0, None)
    assert m["load_ms"] == 12.5 and m["first_inference_ms"] == 12.5 and m["compute_units"] == "all"
    assert m["p50_ms"] == pytest.approx(12.0)


def test_the_template_moved_into_the_app_and_bench_points_at_it():
    assert phones.IOS_TEMPLATE.is_file()
    assert phones.IOS_TEMPLATE == REPO / "ios_demo/VeilDemo/BenchTests/VeilPrefixBenchTests.swift"
    assert "ios_demo/VeilDemo/VeilDemo.xcodeproj" in phones.XCODEBUILD_COMMAND
    assert not (REPO / "toolkit/bench/ios").exists()  # one copy of the benchmark, in the app's test target
