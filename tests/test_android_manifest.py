"""The Android app's XML as aapt2 will read it (no Android SDK here): every manifest and resource file is well-formed
XML under expat, the parser aapt2 uses; the benchmark activity only starts for a caller holding DUMP (the shell);
the app's Kotlin no longer carries the lifecycle the core now owns."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

import pytest

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo" / "app" / "src" / "main"
MANIFEST = APP / "AndroidManifest.xml"
ANDROID = "{http://schemas.android.com/apk/res/android}"
XML_FILES = sorted(p for p in APP.rglob("*.xml"))


def parse_with_expat(data: bytes) -> None:
    """Strict expat parse; raises expat.ExpatError with line and column."""
    parser = expat.ParserCreate()
    parser.Parse(data, True)


def test_the_app_has_its_manifest_and_resources():
    names = {p.relative_to(APP).as_posix() for p in XML_FILES}
    assert {"AndroidManifest.xml", "res/values/strings.xml", "res/values/themes.xml",
            "res/layout/activity_main.xml"} <= names


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: p.relative_to(APP).as_posix())
def test_every_xml_file_of_the_app_is_well_formed(path):
    parse_with_expat(path.read_bytes())
    ET.parse(path)


def test_a_double_hyphen_in_a_comment_is_what_expat_refuses():
    """The check can fail: the manifest's old comment (`veil serve --tls-cert`) is rejected at its line."""
    text = MANIFEST.read_text().replace("(veil serve with a TLS certificate,", "(veil serve --tls-cert,")
    assert "--tls-cert" in text
    with pytest.raises(expat.ExpatError) as e:
        parse_with_expat(text.encode())
    assert e.value.lineno == 8


def _activities() -> dict[str, ET.Element]:
    app = ET.parse(MANIFEST).getroot().find("application")
    return {a.get(ANDROID + "name"): a for a in app.findall("activity")}


def test_only_the_shell_can_start_the_benchmark_activity():
    bench = _activities()[".BenchmarkActivity"]
    assert bench.get(ANDROID + "exported") == "true"  # `adb shell am start` must reach it
    assert bench.get(ANDROID + "permission") == "android.permission.DUMP"  # held by the shell, by no app
    assert bench.find("intent-filter") is None  # no launcher icon, nothing resolves to it implicitly


def test_the_launcher_activity_and_permissions():
    root = ET.parse(MANIFEST).getroot()
    perms = {p.get(ANDROID + "name") for p in root.findall("uses-permission")}
    assert perms == {"android.permission.RECORD_AUDIO", "android.permission.INTERNET"}
    main = _activities()[".MainActivity"]
    assert main.get(ANDROID + "permission") is None
    actions = {a.get(ANDROID + "name") for a in main.iter("action")}
    assert actions == {"android.intent.action.MAIN"}
    assert root.find("application").get(ANDROID + "allowBackup") == "false"


def test_the_app_keeps_the_screen_on_and_releases_through_the_core_lifecycle():
    sources = APP / "java" / "veil" / "demo"
    main = (sources / "MainActivity.kt").read_text()
    assert "addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)" in main
    assert "clearFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)" in main
    assert "model.interrupt(" in main  # leaving the screen ends the session as interrupted
    assert not (sources / "StreamingSession.kt").exists()  # the session is the core's StreamingPipeline
    model = (sources / "MainViewModel.kt").read_text()
    assert "StreamingPipeline(" in model and "catch (e: IOException)" in model
    assert "catch (e: IllegalArgumentException)" in model and '"microphone"' not in model
    capture = (sources / "AudioCapture.kt").read_text()
    assert "class AudioCapture : Microphone" in capture and "synchronized(lock)" in capture
    bench = (sources / "BenchmarkActivity.kt").read_text()
    assert "setReadOnly()" in bench and "catch (e: IOException)" in bench
    runtimes = (sources / "PrefixRuntimes.kt").read_text()
    assert runtimes.count("override fun prepareRuntime()") == 2


def test_the_readmes_give_the_complete_aar_fallback_and_a_first_device_run():
    android = (REPO / "android_demo" / "README.md").read_text()
    assert 'implementation(files("libs/executorch.aar"))' in android
    assert 'implementation("com.facebook.fbjni:fbjni:0.7.0")' in android
    assert 'implementation("com.facebook.soloader:soloader:0.10.5")' in android
    assert "## First device run" in android and "veil bench exports/k6-d16-n0.5-k6 --device android --app" in android
    ios = (REPO / "ios_demo" / "README.md").read_text()
    assert "6.1 or newer" in ios and "≥ 5.9" not in ios
    assert "## First device run" in ios and "--device ios --ios-log" in ios
