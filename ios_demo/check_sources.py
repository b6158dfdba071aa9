"""Static checks of the iOS demo's Swift sources, for machines without a Swift compiler.

No Swift toolchain exists where Veil's CI runs (Debian 12 ships none and no reachable registry has one), so the
Swift core (ios_demo/VeilCore) cannot be compiled or tested there. What can be checked without a compiler is
checked here, against the Kotlin core it mirrors (android_demo/core), which *is* built and tested:

  syntax          every .swift file parses with the tree-sitter Swift grammar (no ERROR or MISSING node)
  mirrors         every Kotlin source and test file has its Swift mirror, whose first line names the Kotlin file;
                  every other Swift file says "Swift only:" and is listed in SWIFT_ONLY with what it stands in for
  tests           every Kotlin @Test has a Swift test method of the derived name in the mirrored Swift test file
  vector keys     every index.json / manifest key and test resource the Kotlin tests read, the Swift tests read
  refusals        per mirrored source pair, the same refusals in the same order: the constructor or helper
                  (PayloadException, ManifestException, refuse, fail, SessionError, require, check, ...), its
                  reason and code literals, and its message with interpolations and printf fields as {}
  error codes     the protocol's error table is the same in Protocol.kt, Protocol.swift and testvectors/index.json
  bench keys      BenchSchema.swift writes the JSON keys of BenchSchema.kt, in order (platform keys listed)
  float16         no `Float16` anywhere (unavailable on Intel Macs; fp16 is converted bit by bit)
  rounding        `.rounded(...)` only as `.rounded(.toNearestOrEven)` (numpy's rint), no round()/lround()/rint()
                  in VeilCore or the app's sample conversion
  imports         VeilCore imports Foundation (and Dispatch, XCTest in tests) only; FoundationNetworking, Glibc and
                  Darwin only inside `#if canImport(...)` of that module; Apple-only frameworks (CoreML,
                  AVFoundation, SwiftUI, ...) only in the app
  test imports    a test file that names a VeilCore type or function imports VeilCore (imports are per file)
  corelibs        URLSessionWebSocketTask's completion-handler send/receive only under `#if canImport(Darwin) ||
                  compiler(>=6.1)`: swift-corelibs-foundation keeps them private before 6.1
  package         Package.swift: tools version 5.9, the VeilCore library, target and test target, no dependencies
  traceability    ios_demo/TRACEABILITY.md is the table the tree gives (Kotlin -> Swift, files and tests)
  app             the Xcode project spec (project.yml) builds VeilDemo and VeilBenchTests against the local
                  package with a SWIFT_VERSION Xcode accepts (4.0, 4.2, 5.0, 6.0) and the local-network usage text;
                  the microphone tap is at the input node's output bus format, re-installed on engine configuration
                  and device route changes, and interruptions end the session; Core ML compiles the .mlpackage off
                  the main thread through one serial Preparer, with a selectable compute unit, one warm-up
                  prediction and the compiled cache excluded from backup

`python ios_demo/check_sources.py` prints every violation (exit 1) or "ok"; tests/test_ios_sources.py runs each
check on the tree and shows, on a copy with a planted violation, that the check catches it.
"""
from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import tree_sitter_kotlin
import tree_sitter_swift
from tree_sitter import Language, Node, Parser

REPO = Path(__file__).resolve().parents[1]
KOTLIN_MAIN = Path("android_demo/core/src/main/kotlin/veil/core")
KOTLIN_TEST = Path("android_demo/core/src/test/kotlin/veil/core")
KOTLIN_RESOURCES = Path("android_demo/core/src/test/resources")
SWIFT_PACKAGE = Path("ios_demo/VeilCore")
SWIFT_MAIN = SWIFT_PACKAGE / "Sources/VeilCore"
SWIFT_TEST = SWIFT_PACKAGE / "Tests/VeilCoreTests"
APP = Path("ios_demo/VeilDemo")
VECTORS_INDEX = Path("testvectors/index.json")

# Kotlin files whose Swift mirror has another name, and why.
RENAMED = {
    KOTLIN_TEST / "JvmFramePrefix.kt": SWIFT_TEST / "StandInFramePrefix.swift",  # no JVM: a Swift stand-in runtime
    KOTLIN_TEST / "JdkWebSocketTransport.kt": SWIFT_MAIN / "URLSessionTransport.swift",  # the app's transport too
}
# Swift files with no Kotlin counterpart: what each stands in for.
SWIFT_ONLY = {
    SWIFT_MAIN / "ByteBuffer.swift": "java.nio.ByteBuffer (little-endian reads and writes)",
    SWIFT_MAIN / "JSON.swift": "org.json (Android's JSON library)",
    SWIFT_MAIN / "SHA256.swift": "java.security.MessageDigest",
    SWIFT_MAIN / "URLSessionTransport.swift": "OkHttpTransport.kt (app) and JdkWebSocketTransport.kt (tests)",
    SWIFT_TEST / "Throws.swift": "JUnit's assertThrows",
    SWIFT_TEST / "JSONTest.swift": "tests of JSON.swift",
    SWIFT_TEST / "SHA256Test.swift": "tests of SHA256.swift",
}
# Words of a Kotlin test name said differently in the Swift mirror's name.
TEST_NAME_WORDS = {"Kotlin": "Swift", "Jvm": "Swift"}
# Calls whose literal arguments describe a refusal; Swift's thrown IllegalArgument/IllegalState structs are
# Kotlin's require/check.
REFUSAL_CALLS = {"PayloadException": "PayloadException", "ManifestException": "ManifestException",
                 "PrefixLoadException": "PrefixLoadException", "ProtocolException": "ProtocolException",
                 "VeilException": "VeilException", "SessionError": "SessionError", "fail": "fail",
                 "refuse": "refuse", "require": "require", "IllegalArgumentException": "require",
                 "check": "check", "IllegalStateException": "check"}
# Refusals only one side has, by file: (call, first literal) -> why.
REFUSALS_SWIFT_ONLY = {
    "Manifest.swift": {("ManifestException", "missing_file"):
                       "a .mlpackage is a folder: the folder walk refuses a path that vanished, as fileOf does"},
}
REFUSALS_KOTLIN_ONLY: dict[str, dict[tuple[str, str], str]] = {
    "StreamingPipeline.swift": {("fail", "permission"): "Android's AudioRecord throws SecurityException without "
                                "RECORD_AUDIO; the iOS app asks for the microphone before the session starts"},
}
# Messages that differ by platform, by file: Kotlin skeleton -> Swift skeleton.
MESSAGES_BY_PLATFORM = {
    "Manifest.swift": {"{}: no {} (not an export folder; run `veil export --target android` first)":
                       "{}: no {} (not an export folder; run `veil export --target ios` first)"},
}
# JSON keys of BenchSchema that name Android or iOS facts.
BENCH_KEYS_KOTLIN_ONLY = {"sdk_int", "release"}
BENCH_KEYS_SWIFT_ONLY = {"system_name", "system_version"}
JSON_ACCESSORS = {"getJSONObject", "getJSONArray", "getString", "getInt", "getLong", "getDouble", "getBoolean",
                  "optJSONObject", "optString", "has", "opt"}
APPLE_ONLY_MODULES = {"CoreML", "AVFoundation", "AVFAudio", "SwiftUI", "UIKit", "AppKit", "CryptoKit", "Combine",
                      "OSLog", "os", "Accelerate", "CoreMedia", "CoreAudio", "AudioToolbox", "Network", "CommonCrypto",
                      "Security", "ObjectiveC"}
CORE_MODULES = {"Foundation", "Dispatch"}
GUARDED_MODULES = {"FoundationNetworking", "Glibc", "Darwin", "Musl"}
CORE_TEST_MODULES = {"XCTest", "VeilCore"}

_KOTLIN = Parser(Language(tree_sitter_kotlin.language()))
_SWIFT = Parser(Language(tree_sitter_swift.language()))
_PRINTF = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?l*[sdxXfegc]")
_KOTLIN_TEMPLATE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$", "0": "\0", "b": "\b"}


def _parse(path: Path) -> Node:
    st = path.stat()
    return _parse_cached(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=512)
def _parse_cached(path: str, _mtime_ns: int, _size: int) -> Node:
    parser = _KOTLIN if path.endswith(".kt") else _SWIFT
    return parser.parse(Path(path).read_bytes()).root_node


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def swift_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "ios_demo").rglob("*.swift") if ".build" not in p.parts)


# ---- strings and calls, in either language ------------------------------------------------------------------

def _is_string(node: Node) -> bool:
    return node.type in ("string_literal", "line_string_literal", "multi_line_string_literal")


def string_skeleton(node: Node) -> str:
    """A string literal's text with escapes decoded, interpolations and printf fields as {}."""
    out, run = [], []

    def flush():
        out.append(_KOTLIN_TEMPLATE.sub("{}", "".join(run)))
        run.clear()

    for child in node.children:
        if child.type in ("string_content", "line_str_text", "multi_line_str_text"):
            run.append(child.text.decode())
        elif child.type in ("escape_sequence", "str_escaped_char"):
            flush()
            raw = child.text.decode()
            out.append(_ESCAPES.get(raw[1:], raw))
        elif child.type in ("interpolation", "interpolated_expression"):
            flush()
            out.append("{}")
    flush()
    return _PRINTF.sub("{}", "".join(out))


def _literal_skeleton(node: Node) -> str:
    """The string literals of an argument, joined (interpolations and nested calls are not entered); a number's
    text; else {}."""
    if node.type in ("number_literal", "integer_literal"):
        return node.text.decode()
    if node.type == "call_expression":
        if _callee(node) != "format":  # String.format(Locale.ROOT, "...", x) is Kotlin's interpolation
            return "{}"
        node = node.children[-1]
    parts = []
    stack = [node]
    while stack:
        n = stack.pop()
        if _is_string(n):
            parts.append(string_skeleton(n))
            continue
        if n.type == "call_expression" and n is not node:
            continue
        stack.extend(reversed(n.children))
    return "".join(parts) if parts else "{}"


def _callee(call: Node) -> str | None:
    first = call.children[0] if call.children else None
    if first is None:
        return None
    if first.type in ("identifier", "simple_identifier"):
        return first.text.decode()
    if first.type == "navigation_expression":
        names = [n for n in _walk(first) if n.type in ("identifier", "simple_identifier")]
        return names[-1].text.decode() if names else None
    if first.type == "call_expression":  # Kotlin's require(cond) { message }: the lambda follows the call
        return _callee(first)
    return None


def call_arguments(call: Node) -> list[Node]:
    """The argument expressions of a call (Kotlin value_argument / trailing lambda, Swift value_argument)."""
    args = []
    for n in _walk(call):
        if n.type == "value_argument" and _enclosing_call(n) == call:
            exprs = [c for c in n.children if c.is_named and c.type not in ("value_argument_label", "simple_identifier")
                     or c.type == "simple_identifier" and c.next_sibling is None]
            args.append(exprs[-1] if exprs else n)
        elif n.type == "annotated_lambda" and n.parent == call:
            args.append(n)
    return args


def _enclosing_call(node: Node) -> Node | None:
    n = node.parent
    while n is not None:
        if n.type == "call_expression":
            if n.parent is not None and n.parent.type == "call_expression" and n.parent.children[0] == n:
                return n.parent if any(c.type == "annotated_lambda" for c in n.parent.children) else n
            return n
        n = n.parent
    return None


def calls(root: Node):
    for n in _walk(root):
        if n.type == "call_expression" and not (n.parent is not None and n.parent.type == "call_expression"
                                                and n.parent.children[0] == n):
            yield n


def refusals(path: Path) -> list[tuple[str, ...]]:
    """(call, literal skeleton of each argument...) of every refusal in the file, in source order."""
    out = []
    for call in calls(_parse(path)):
        name = REFUSAL_CALLS.get(_callee(call) or "")
        if name is None:
            continue
        skeletons = [_literal_skeleton(a) for a in call_arguments(call)]
        if name in ("require", "check"):
            skeletons = skeletons[-1:]
        if all(s == "{}" for s in skeletons):
            continue  # no literal: a pass-through (fail(SessionError(...)), refuse's own constructor call)
        out.append((name, *skeletons))
    return out


def put_keys(path: Path) -> list[str]:
    """First literal argument of every `.put("key", ...)` call, in order."""
    keys = []
    for call in calls(_parse(path)):
        if _callee(call) == "put" and call.children[0].type == "navigation_expression":
            args = call_arguments(call)
            if len(args) == 2 and _is_string(args[0]):
                keys.append(string_skeleton(args[0]))
    return keys


def accessor_keys(path: Path) -> set[str]:
    """Literal keys passed to JSON accessors (getJSONObject("chunker"), getString("file")...), and resource names."""
    keys = set()
    for call in calls(_parse(path)):
        name = _callee(call)
        args = call_arguments(call)
        if name in JSON_ACCESSORS and args and _is_string(args[0]):
            keys.add(string_skeleton(args[0]))
        if name == "resourceText" and args and _is_string(args[0]):
            keys.add("resource:" + string_skeleton(args[0]))
    return keys


def kotlin_tests(path: Path) -> list[str]:
    return re.findall(r"@Test\s+fun `([^`]+)`", path.read_text())


def swift_test_name(kotlin_name: str) -> str:
    """`an utterance becomes 2-s windows` -> testAnUtteranceBecomes2SWindows (Kotlin -> Swift in names)."""
    words = [TEST_NAME_WORDS.get(w[0].upper() + w[1:], w[0].upper() + w[1:])
             for w in re.findall(r"[A-Za-z0-9]+", kotlin_name)]
    return "test" + "".join(words)


def mirror_of(kotlin: Path) -> Path:
    if kotlin in RENAMED:
        return RENAMED[kotlin]
    folder = SWIFT_MAIN if kotlin.parent == KOTLIN_MAIN else SWIFT_TEST
    return folder / (kotlin.stem + ".swift")


def mirrored_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for folder in (KOTLIN_MAIN, KOTLIN_TEST):
        for kt in sorted((root / folder).glob("*.kt")):
            rel = kt.relative_to(root)
            pairs.append((rel, mirror_of(rel)))
    return pairs


# ---- the checks: each returns a list of violations (empty: passed) ---------------------------------------------

def check_syntax(root: Path) -> list[str]:
    problems = []
    for path in swift_files(root):
        tree = _SWIFT.parse(path.read_bytes())
        if not tree.root_node.has_error:
            continue
        bad = [n for n in _walk(tree.root_node) if n.type == "ERROR" or n.is_missing]
        where = bad[0].start_point if bad else (0, 0)
        problems.append(f"{path.relative_to(root)}:{where[0] + 1}:{where[1] + 1}: Swift syntax error "
                        f"({'missing ' + bad[0].type if bad and bad[0].is_missing else 'unparsable text'})")
    return problems


def check_mirrors(root: Path) -> list[str]:
    problems = []
    mirrored = set()
    for kotlin, swift in mirrored_pairs(root):
        mirrored.add(swift)
        if not (root / swift).is_file():
            problems.append(f"{kotlin} has no Swift mirror ({swift})")
            continue
        first = (root / swift).read_text().splitlines()[0] if (root / swift).read_text() else ""
        if swift in SWIFT_ONLY:
            continue
        if first != f"// Mirrors {kotlin}":
            problems.append(f"{swift}: first line must be '// Mirrors {kotlin}', is {first!r}")
    for folder in (SWIFT_MAIN, SWIFT_TEST):
        for path in sorted((root / folder).glob("*.swift")):
            rel = path.relative_to(root)
            if rel in mirrored and rel not in SWIFT_ONLY:
                continue
            text = path.read_text()
            if rel not in SWIFT_ONLY:
                problems.append(f"{rel} mirrors no Kotlin file and is not listed as Swift only")
            elif not text.startswith("// Swift only:"):
                problems.append(f"{rel}: first line must start with '// Swift only:' ({SWIFT_ONLY[rel]})")
    return problems


def check_tests(root: Path) -> list[str]:
    problems = []
    for kt in sorted((root / KOTLIN_TEST).glob("*.kt")):
        names = kotlin_tests(kt)
        if not names:
            continue
        swift = root / mirror_of(kt.relative_to(root))
        text = swift.read_text() if swift.is_file() else ""
        if names and not re.search(rf"final class {kt.stem}: XCTestCase", text):
            problems.append(f"{swift.relative_to(root)}: no 'final class {kt.stem}: XCTestCase'")
        for name in names:
            want = swift_test_name(name)
            if not re.search(rf"\bfunc {want}\(\)", text):
                problems.append(f"{kt.relative_to(root)}: test `{name}` has no Swift mirror "
                                f"func {want}() in {swift.relative_to(root)}")
    return problems


def check_vector_keys(root: Path) -> list[str]:
    kotlin, swift = set(), set()
    for kt in (root / KOTLIN_TEST).glob("*.kt"):
        kotlin |= accessor_keys(kt)
    for sw in (root / SWIFT_TEST).glob("*.swift"):
        swift |= accessor_keys(sw)
    return [f"the Kotlin tests read {k!r} (testvectors/index.json, a manifest or a test resource); no Swift test does"
            for k in sorted(kotlin - swift)]


def check_refusals(root: Path) -> list[str]:
    problems = []
    for kotlin, swift in mirrored_pairs(root):
        if kotlin.parent != KOTLIN_MAIN or not (root / swift).is_file():
            continue
        k = refusals(root / kotlin)
        s = refusals(root / swift)
        for (call, first), _why in REFUSALS_SWIFT_ONLY.get(swift.name, {}).items():
            s = _drop_last(s, call, first)
        for (call, first), _why in REFUSALS_KOTLIN_ONLY.get(swift.name, {}).items():
            k = _drop_last(k, call, first)
        renamed = MESSAGES_BY_PLATFORM.get(swift.name, {})
        k = [tuple(renamed.get(part, part) for part in r) for r in k]
        if k == s:
            continue
        for i, (a, b) in enumerate(zip(k, s)):
            if a != b:
                problems.append(f"{swift}: refusal {i + 1} differs from {kotlin}: Kotlin {a}, Swift {b}")
                break
        else:
            longer, side = (k, "Kotlin") if len(k) > len(s) else (s, "Swift")
            problems.append(f"{swift}: {len(s)} refusals, {kotlin} has {len(k)}; only {side} has "
                            f"{longer[min(len(k), len(s))]}")
    return problems


def _drop_last(items: list[tuple[str, ...]], call: str, first: str) -> list[tuple[str, ...]]:
    """Without the last refusal of `call` whose first literal is `first` (the one-sided ones come last)."""
    for i in range(len(items) - 1, -1, -1):
        if items[i][0] == call and len(items[i]) > 1 and items[i][1] == first:
            return items[:i] + items[i + 1:]
    return items


def error_table(path: Path) -> list[tuple[int, str, int, str]]:
    rows = []
    for call in calls(_parse(path)):
        if _callee(call) == "ErrorCode":
            args = [_literal_skeleton(a) for a in call_arguments(call)]
            if len(args) == 4 and args[0].isdigit():
                rows.append((int(args[0]), args[1], int(args[2]), args[3]))
    return rows


def check_error_codes(root: Path) -> list[str]:
    kotlin = error_table(root / KOTLIN_MAIN / "Protocol.kt")
    swift = error_table(root / SWIFT_MAIN / "Protocol.swift")
    problems = []
    if not kotlin:
        problems.append(f"{KOTLIN_MAIN / 'Protocol.kt'}: no ErrorCode table found")
    if swift != kotlin:
        problems.append(f"{SWIFT_MAIN / 'Protocol.swift'}: ErrorCodes.ALL differs from Protocol.kt: "
                        f"{sorted(set(swift) ^ set(kotlin))}")
    index = json.loads((root / VECTORS_INDEX).read_text())
    vectors = sorted((e["code"], e["name"], e["http"]) for e in index["error_codes"])
    if sorted((c, n, h) for c, n, h, _ in swift) != vectors:
        problems.append(f"{SWIFT_MAIN / 'Protocol.swift'}: ErrorCodes.ALL differs from {VECTORS_INDEX} error_codes")
    return problems


def check_bench_keys(root: Path) -> list[str]:
    kotlin = [k for k in put_keys(root / KOTLIN_MAIN / "BenchSchema.kt") if k not in BENCH_KEYS_KOTLIN_ONLY]
    swift = [k for k in put_keys(root / SWIFT_MAIN / "BenchSchema.swift") if k not in BENCH_KEYS_SWIFT_ONLY]
    if kotlin == swift:
        return []
    i = next((i for i, (a, b) in enumerate(zip(kotlin, swift)) if a != b), min(len(kotlin), len(swift)))
    return [f"{SWIFT_MAIN / 'BenchSchema.swift'}: JSON key {i + 1} is "
            f"{swift[i] if i < len(swift) else 'missing'!r}, BenchSchema.kt writes "
            f"{kotlin[i] if i < len(kotlin) else 'nothing'!r}"]


def _code_nodes(path: Path):
    """Nodes outside comments and string literals."""
    stack = [_parse(path)]
    while stack:
        n = stack.pop()
        if n.type in ("comment", "multiline_comment") or _is_string(n):
            continue
        yield n
        stack.extend(n.children)


def check_float16(root: Path) -> list[str]:
    problems = []
    for path in swift_files(root):
        for n in _code_nodes(path):
            if n.type in ("type_identifier", "simple_identifier") and n.text == b"Float16":
                problems.append(f"{path.relative_to(root)}:{n.start_point[0] + 1}: Float16 is unavailable on Intel "
                                f"Macs; convert with VeilCore's Fp16 (bit by bit)")
    return problems


def rounding_files(root: Path) -> list[Path]:
    return sorted((root / SWIFT_MAIN).glob("*.swift")) + sorted((root / APP).rglob("*.swift"))


def check_rounding(root: Path) -> list[str]:
    problems = []
    for path in rounding_files(root):
        for call in calls(_parse(path)):
            name = _callee(call)
            line = call.start_point[0] + 1
            if name == "rounded":
                args = [a.text.decode() for a in call_arguments(call)]
                if args != [".toNearestOrEven"]:
                    problems.append(f"{path.relative_to(root)}:{line}: .rounded({', '.join(args)}) rounds half away "
                                    f"from zero or another way; numpy rounds half to even: .rounded(.toNearestOrEven)")
            elif name in ("round", "roundf", "lround", "llround", "rint", "lrint", "nearbyint"):
                problems.append(f"{path.relative_to(root)}:{line}: {name}() in codec or sample code; "
                                f"use .rounded(.toNearestOrEven)")
    return problems


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, the `#if canImport(X)` guarding it, if directly inside one)."""
    out = []
    guard = None
    for i, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if m := re.match(r"#if canImport\((\w+)\)$", s):
            guard = m.group(1)
        elif s.startswith(("#else", "#elseif", "#endif")) or s.startswith("#if "):
            guard = None
        elif m := re.match(r"(?:@testable\s+|@_exported\s+)?import\s+(?:class\s+|struct\s+|enum\s+|func\s+)?(\w+)", s):
            out.append((i, m.group(1), guard))
    return out


def check_imports(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / SWIFT_PACKAGE).rglob("*.swift")):
        rel = path.relative_to(root)
        in_tests = SWIFT_TEST in rel.parents
        for line, module, guard in _imports(path):
            where = f"{rel}:{line}"
            if module in APPLE_ONLY_MODULES:
                problems.append(f"{where}: import {module}: an Apple-only framework in VeilCore (it must build on "
                                f"Linux with Foundation alone); Apple frameworks belong in the app")
            elif module in GUARDED_MODULES:
                if guard != module:
                    problems.append(f"{where}: import {module} must sit directly inside #if canImport({module})")
            elif module in CORE_MODULES or path.name == "Package.swift" and module == "PackageDescription":
                continue
            elif in_tests and module in CORE_TEST_MODULES:
                continue
            else:
                problems.append(f"{where}: import {module}: VeilCore depends on Foundation only")
    for path in swift_files(root):
        for line, module, guard in _imports(path):
            if module == "FoundationNetworking" and guard != module:
                problems.append(f"{path.relative_to(root)}:{line}: import FoundationNetworking must sit directly inside "
                                f"#if canImport(FoundationNetworking)")
    return sorted(set(problems))


def check_package(root: Path) -> list[str]:
    path = root / SWIFT_PACKAGE / "Package.swift"
    if not path.is_file():
        return [f"{SWIFT_PACKAGE / 'Package.swift'} is missing"]
    text = path.read_text()
    problems = []
    if not text.startswith("// swift-tools-version:5.9\n"):
        problems.append(f"{SWIFT_PACKAGE / 'Package.swift'}: first line must be '// swift-tools-version:5.9'")
    for want in ('.library(name: "VeilCore", targets: ["VeilCore"])', '.target(name: "VeilCore"',
                 '.testTarget(name: "VeilCoreTests", dependencies: ["VeilCore"]'):
        if want not in text:
            problems.append(f"{SWIFT_PACKAGE / 'Package.swift'}: does not declare {want}")
    if ".package(" in text:
        problems.append(f"{SWIFT_PACKAGE / 'Package.swift'}: VeilCore takes no package dependencies")
    return problems


XCODE_SWIFT_VERSIONS = ("4.0", "4.2", "5.0", "6.0")
# corelibs-foundation keeps URLSessionWebSocketTask's completion-handler send/receive private before Swift 6.1
CALLBACK_WEBSOCKET = re.compile(r"\.(send|receive)\s*(\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\))?\s*\{|completionHandler:")
CORELIBS_GUARD = "compiler(>=6.1)"


def check_corelibs(root: Path) -> list[str]:
    """URLSessionWebSocketTask's callback send/receive only inside `#if ... compiler(>=6.1)` (not its #else): on
    Linux they are private in swift-corelibs-foundation before 6.1, and VeilCore must build there."""
    problems = []
    for path in sorted((root / SWIFT_MAIN).glob("*.swift")):
        stack: list[list] = []  # [condition, in_else]
        for i, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("#if "):
                stack.append([s[4:], False])
            elif s.startswith("#elseif") and stack:
                stack[-1] = [s[len("#elseif "):], False]
            elif s.startswith("#else") and stack:
                stack[-1][1] = True
            elif s.startswith("#endif") and stack:
                stack.pop()
            elif not s.startswith("//") and CALLBACK_WEBSOCKET.search(s) and "webSocketTask" not in s:
                if not any(CORELIBS_GUARD in cond and not in_else for cond, in_else in stack):
                    problems.append(f"{path.relative_to(root)}:{i}: a completion-handler WebSocket call outside "
                                    f"`#if canImport(Darwin) || {CORELIBS_GUARD}`: private in swift-corelibs-foundation "
                                    f"before 6.1, so VeilCore would not build on Linux 5.9-6.0 (use the async form there)")
    return problems


def _core_names(root: Path) -> set[str]:
    names = set()
    for path in (root / SWIFT_MAIN).glob("*.swift"):
        names |= set(re.findall(r"^public (?:final )?(?:class|struct|enum|protocol) (\w+)", path.read_text(), re.M))
        names |= set(re.findall(r"^public func (\w+)", path.read_text(), re.M))
    return names


def check_test_imports(root: Path) -> list[str]:
    """Imports are per file: a test file that names a VeilCore type or function must `import VeilCore`."""
    names = _core_names(root)
    problems = []
    for path in sorted((root / SWIFT_TEST).glob("*.swift")):
        if any(module == "VeilCore" for _, module, _ in _imports(path)):
            continue
        used = sorted({n.text.decode() for n in _code_nodes(path)
                       if n.type in ("type_identifier", "simple_identifier") and n.text.decode() in names})
        if used:
            problems.append(f"{path.relative_to(root)}: uses {', '.join(used)} from VeilCore without `import VeilCore`")
    return problems


BENCH = APP / "BenchTests/VeilPrefixBenchTests.swift"


def _function(root_node: Node, name: str) -> Node | None:
    for n in _walk(root_node):
        if n.type == "function_declaration" and any(c.type == "simple_identifier" and c.text.decode() == name
                                                    for c in n.children):
            return n
    return None


def _argument(call: Node, label: str) -> str | None:
    for n in _walk(call):
        if n.type == "value_argument" and _enclosing_call(n) == call:
            labels = [c for c in n.children if c.type == "value_argument_label"]
            if labels and labels[0].text.decode() == label:
                return n.children[-1].text.decode()
    return None


def check_app(root: Path) -> list[str]:
    problems = []
    spec = root / APP / "project.yml"
    if not spec.is_file():
        return [f"{APP / 'project.yml'} is missing"]
    text = spec.read_text()
    for want, what in (("path: ../VeilCore", "the local VeilCore package"), ("package: VeilCore", "VeilCore as a dependency"),
                       ("\n  VeilDemo:\n    type: application", "the app target VeilDemo"),
                       ("\n  VeilBenchTests:\n    type: bundle.unit-test", "the benchmark target VeilBenchTests"),
                       ("NSMicrophoneUsageDescription", "the microphone usage description")):
        if want not in text:
            problems.append(f"{APP / 'project.yml'}: no {what} ({want.strip()!r})")
    version = re.search(r'\n\s*SWIFT_VERSION:\s*"?([^"\n]+)"?', text)
    if not version or version.group(1).strip() not in XCODE_SWIFT_VERSIONS:
        problems.append(f"{APP / 'project.yml'}: SWIFT_VERSION is {version.group(1).strip() if version else 'unset'!r}; "
                        f"Xcode takes a language mode, one of {', '.join(XCODE_SWIFT_VERSIONS)}")
    if "NSLocalNetworkUsageDescription" not in text:
        problems.append(f"{APP / 'project.yml'}: no NSLocalNetworkUsageDescription (the local-network prompt for a "
                        f"ws://192.168... server)")
    for path in re.findall(r"- path: (\S+)", text):
        if not (root / APP / path).exists():
            problems.append(f"{APP / 'project.yml'}: source {path} does not exist")

    audio = root / APP / "Sources/AudioCapture.swift"
    tree = _parse(audio)
    taps = [c for c in calls(tree) if _callee(c) == "installTap" and call_arguments(c)]  # AVAudioNode's, not ours
    if not taps:
        problems.append(f"{APP / 'Sources/AudioCapture.swift'}: no installTap")
    for tap in taps:
        fmt = _argument(tap, "format") or ""
        source = re.search(rf"let {re.escape(fmt)} = [\w.]*outputFormat\(forBus: 0\)", audio.read_text()) if fmt else None
        if not (fmt.endswith("outputFormat(forBus: 0)") or source):
            problems.append(f"{APP / 'Sources/AudioCapture.swift'}:{tap.start_point[0] + 1}: the tap's format is "
                            f"{fmt!r}, not the input node's output bus format inputNode.outputFormat(forBus: 0) (a 16 kHz "
                            f"tap, or one whose channel count differs from the bus's, aborts on devices; convert with "
                            f"AVAudioConverter)")
    audio_text = audio.read_text()
    for want in ("AVAudioConverter(from:", "AVAudioSession.routeChangeNotification", ".AVAudioEngineConfigurationChange",
                 "AVAudioSession.interruptionNotification", "class AudioCapture: Microphone",
                 "case .newDeviceAvailable, .oldDeviceUnavailable"):
        if want not in audio_text:
            problems.append(f"{APP / 'Sources/AudioCapture.swift'}: no {want}")
    restart = _function(tree, "restart")
    if restart is None or not any(_callee(c) == "installTap" for c in calls(restart)):
        problems.append(f"{APP / 'Sources/AudioCapture.swift'}: a route or configuration change must re-install the tap "
                        f"(restart() calling installTap())")

    coreml = (root / APP / "Sources/CoreMLPrefix.swift").read_text()
    for want in ("MLModel.compileModel(at:", "config.computeUnits = ", "case cpuOnly", "case cpuAndGPU",
                 "case cpuAndNeuralEngine", "case all", "withUnsafeMutableBytes"):
        if want not in coreml:
            problems.append(f"{APP / 'Sources/CoreMLPrefix.swift'}: no {want!r}")
    prepare = _function(_parse(root / APP / "Sources/StreamingSession.swift"), "prepare")
    body = [_callee(c) for c in calls(prepare)] if prepare is not None else []
    if "load" not in body or "run" not in body[body.index("load"):]:
        problems.append(f"{APP / 'Sources/StreamingSession.swift'}: PreparedPrefix.prepare must load the model and "
                        f"then run one warm-up prediction")
    model = (root / APP / "Sources/SessionModel.swift").read_text()
    if "work.async" not in model:
        problems.append(f"{APP / 'Sources/SessionModel.swift'}: the prefix must be prepared off the main thread")
    session = (root / APP / "Sources/StreamingSession.swift").read_text()
    if "final class Preparer" not in session or "queue.sync" not in session or "preparer.prepared(" not in model:
        problems.append(f"{APP / 'Sources/StreamingSession.swift'}: preparations must go through one serial Preparer "
                        f"(a Start during the start-up preparation would compile the same model twice)")
    if "requestRecordPermission {" in model or "requestRecordPermission() {" in model:
        problems.append(f"{APP / 'Sources/SessionModel.swift'}: the permission's completion handler is main-actor "
                        f"isolated but AVFAudio calls it off the main thread; await requestRecordPermission()")
    if "isExcludedFromBackup = true" not in (root / APP / "Sources/CoreMLPrefix.swift").read_text():
        problems.append(f"{APP / 'Sources/CoreMLPrefix.swift'}: compiled models must be excluded from backup")

    bench = root / BENCH
    if not bench.is_file():
        return problems + [f"{BENCH} is missing"]
    bench_text = bench.read_text()
    for want in ("measure(metrics: [XCTClockMetric(), XCTCPUMetric(), XCTMemoryMetric()]", "BenchRunner.measure(",
                 "BenchSchema.document(", "veil-bench: case=", "load_ms=", "first_inference_ms=",
                 "func testPrefixCPUOnly()", "func testPrefixCPUAndGPU()", "func testPrefixCPUAndNeuralEngine()",
                 "func testPrefixAll()"):
        if want not in bench_text:
            problems.append(f"{BENCH}: no {want!r}")
    return problems


def marker_keys(root: Path = REPO) -> list[str]:
    """The key=value fields of the benchmark's `veil-bench:` log line, in order, from its Swift source."""
    text = (root / BENCH).read_text()
    start = text.index('"veil-bench: case=')
    end = text.index("NSLog", start)
    return re.findall(r"(\w+)=", text[start:end])


TRACEABILITY = Path("ios_demo/TRACEABILITY.md")


def traceability(root: Path = REPO) -> str:
    """ios_demo/TRACEABILITY.md: Kotlin source -> Swift source, Kotlin test -> Swift test, what is Swift only and
    why, and the documented differences; generated from the same tables the checks use."""
    lines = ["# VeilCore (Swift) <-> android_demo/core (Kotlin): traceability", "",
             "Generated by `python ios_demo/check_sources.py --traceability > ios_demo/TRACEABILITY.md`; the `traceability`",
             "check fails when this file is not what the tree gives. Each Swift mirror's first line names its Kotlin",
             "file; tests/test_ios_sources.py runs the checks listed in ios_demo/check_sources.py.", "",
             "## Sources", "", "| Kotlin (`android_demo/core/src/main/kotlin/veil/core/`) | Swift (`ios_demo/VeilCore/Sources/VeilCore/`) |",
             "|---|---|"]
    pairs = mirrored_pairs(root)
    for k, sw in pairs:
        if k.parent == KOTLIN_MAIN:
            lines.append(f"| `{k.name}` | `{sw.name}` |")
    lines += ["", "## Tests", "", "Swift test names are the Kotlin names in camel case after `test` (Kotlin -> Swift).", "",
              "| Kotlin test (`android_demo/core/src/test/kotlin/veil/core/`) | Swift (`ios_demo/VeilCore/Tests/VeilCoreTests/`) |",
              "|---|---|"]
    derived = set()
    for k, sw in pairs:
        if k.parent != KOTLIN_TEST:
            continue
        where = sw.name if sw.parent == SWIFT_TEST else f"../../Sources/VeilCore/{sw.name}"
        names = kotlin_tests(root / k)
        lines.append(f"| `{k.name}`{'' if names else ' (helper)'} | `{where}` |")
        for n in names:
            derived.add((sw.name, swift_test_name(n)))
            lines.append(f"| &nbsp;&nbsp;{n} | `{swift_test_name(n)}` |")
    lines += ["", "## Swift only", "", "| Swift file | stands in for |", "|---|---|"]
    for path, why in SWIFT_ONLY.items():
        lines.append(f"| `{path.relative_to(SWIFT_PACKAGE)}` | {why} |")
    extra = []
    for path in sorted((root / SWIFT_TEST).glob("*.swift")):
        for name in re.findall(r"\bfunc (test\w+)\(\)", path.read_text()):
            if (path.name, name) not in derived:
                extra.append(f"| `{path.name}` | `{name}` |")
    lines += ["", "Swift tests with no Kotlin counterpart:", "", "| file | test |", "|---|---|"] + extra
    lines += ["", "## Documented differences", "",
              "- Kotlin's `object Protocol` is `VeilProtocol` (Foundation re-exports the Objective-C class `Protocol`).",
              "- Kotlin `Long` is Swift `Int` (64-bit on every platform VeilCore builds for); `ByteArray` is `[UInt8]`.",
              "- Kotlin `require`/`check` failures are thrown `IllegalArgumentException`/`IllegalStateException` structs,",
              "  so most Swift functions are `throws` where Kotlin's are not.",
              "- Renamed mirrors: " + "; ".join(f"`{k.name}` -> `{v.name}`" for k, v in RENAMED.items()) + "."]
    for file, items in REFUSALS_SWIFT_ONLY.items():
        for (call, first), why in items.items():
            lines.append(f"- `{file}` only: {call}(\"{first}\", ...): {why}.")
    for file, items in MESSAGES_BY_PLATFORM.items():
        for kotlin, swift in items.items():
            lines.append(f"- `{file}` message: Kotlin \"{kotlin}\", Swift \"{swift}\".")
    lines.append(f"- BenchSchema JSON keys: Kotlin only {sorted(BENCH_KEYS_KOTLIN_ONLY)}, Swift only "
                 f"{sorted(BENCH_KEYS_SWIFT_ONLY)}; `device.kind` is \"ios\", `via` \"xctest\".")
    return "\n".join(lines) + "\n"


def check_traceability(root: Path) -> list[str]:
    path = root / TRACEABILITY
    if not path.is_file() or path.read_text() != traceability(root):
        return [f"{TRACEABILITY} is not what the tree gives: python ios_demo/check_sources.py --traceability > {TRACEABILITY}"]
    return []


CHECKS = {"syntax": check_syntax, "mirrors": check_mirrors, "tests": check_tests, "vector keys": check_vector_keys,
          "refusals": check_refusals, "error codes": check_error_codes, "bench keys": check_bench_keys,
          "float16": check_float16, "rounding": check_rounding, "imports": check_imports,
          "test imports": check_test_imports, "corelibs": check_corelibs, "package": check_package,
          "app": check_app, "traceability": check_traceability}


def run_all(root: Path = REPO) -> dict[str, list[str]]:
    return {name: check(root) for name, check in CHECKS.items()}


def main() -> int:
    if sys.argv[1:] == ["--traceability"]:
        sys.stdout.write(traceability(REPO))
        return 0
    results = run_all(REPO)
    failed = 0
    for name, problems in results.items():
        for p in problems:
            print(f"{name}: {p}")
        failed += len(problems)
    if failed:
        print(f"ios_demo/check_sources.py: {failed} violation(s)")
        return 1
    print(f"ios_demo/check_sources.py: ok ({', '.join(results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
