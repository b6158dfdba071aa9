# Veil quick start: `make demo` runs the main job, `make test` runs the test suite (the Android demo's Kotlin core
# under Maven Surefire, then pytest on two workers, then the tests marked serial alone). Both install everything
# first (Debian packages via apt-get, Python packages into .venv, the Kotlin 2.x compiler into .cache).
VEIL := .venv/bin/veil
PY := .venv/bin/python
CORPUS := data/corpus

.PHONY: setup demo test corpus clean
setup: .venv/.installed

.venv/.installed: pyproject.toml scripts/setup.sh android_demo/gradle/libs.versions.toml
	bash scripts/setup.sh
	touch $@

$(CORPUS)/manifest.json: | .venv/.installed
	$(VEIL) corpus build --out $(CORPUS)

corpus: $(CORPUS)/manifest.json

demo: setup corpus
	bash scripts/demo.sh

test: setup
	bash android_demo/core/test.sh
	bash scripts/swift_tests.sh
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(PY) -m pytest -q -m serial

clean:
	rm -rf exports .pytest_cache android_demo/core/build
