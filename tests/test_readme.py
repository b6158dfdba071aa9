"""The README is a product page: short, and its first screen shows what Veil is for. Every measured table lives in
the generated docs/results.md, which the README links; export/README.md is a reference, not a lab notebook."""
from __future__ import annotations

from pathlib import Path

from toolkit.headlines import markers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIRST_SCREEN = 40  # lines
ON_THE_FIRST_SCREEN = ("make demo", "make test", "export-prefix --target android", "veil parity",
                       "veil bench --device android", "veil serve", "<!-- veil:models -->", "test WER", "attacker",
                       "docs/results.md")
RESULT_TABLES = ("accuracy", "parity", "bench", "privacy", "privacy-frontier", "serve-load")


def test_the_readme_is_short_and_its_first_screen_shows_the_product():
    text = README.read_text()
    assert len(text) <= 15_000, f"README.md is {len(text)} characters (at most 15,000: results go to docs/results.md)"
    first = "\n".join(text.splitlines()[:FIRST_SCREEN])
    missing = [s for s in ON_THE_FIRST_SCREEN if s not in first]
    assert not missing, f"not in the README's first {FIRST_SCREEN} lines: {missing}"
    table = first.split("<!-- veil:models -->")[1].split("<!-- /veil:models -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows and all("%" in row for row in rows), "the shipped models' table gives each model's WER and attackers"


def test_every_result_table_is_in_the_results_page_not_the_readme():
    readme, results = README.read_text(), (ROOT / "docs" / "results.md").read_text()
    for name in RESULT_TABLES:
        start, end = markers(name)
        assert start not in readme and end not in readme, f"the {name} table belongs in docs/results.md"
        assert results.count(start) == 1 and results.count(end) == 1, f"docs/results.md lacks the {name} table"


def test_the_export_readme_is_a_reference():
    size = len((ROOT / "export" / "README.md").read_bytes())
    assert size <= 12_000, f"export/README.md is {size} bytes (at most 12 kB: research notes go to docs/)"


def test_the_readmes_models_table_is_the_model_cards_table():
    """One table of the shipped models, in models/README.md, repeated on the README's first screen."""
    def table(path: Path) -> str:
        return path.read_text().split("<!-- veil:models -->")[1].split("<!-- /veil:models -->")[0].strip()
    assert table(README) == table(ROOT / "models" / "README.md")
    shipped = {p.stem for p in (ROOT / "models").glob("*.safetensors")}
    assert {row.split("`")[1] for row in table(README).splitlines() if row.startswith("| `")} == shipped
