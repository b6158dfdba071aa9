"""`veil render RESULT.json`: one verb re-renders every recorded result from its JSON alone (dispatching on its
format), and with --readme rewrites the result's headline table in a README between its markers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit.cli import main as veil_main
from toolkit.errors import VeilError
from toolkit.headlines import markers, refresh

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["2026-11-26-vm", "2026-11-26-vm-sweep-executorch-int8-static",
                                  "privacy-2026-11-26-shipped-all-layers", "privacy-sweep-2026-11-26",
                                  "privacy-attempts", "serve-load-2026-11-26",
                                  "privacy-2026-11-26-shipped-k4-executorch-int8-static-suite-fast"])
def test_recorded_results_render_again_from_their_json(tmp_path, name):
    json_path = tmp_path / f"{name}.json"
    shutil.copy(RECORDED / f"{name}.json", json_path)
    assert veil_main(["render", str(json_path)]) == 0
    assert (tmp_path / f"{name}.md").read_text() == (RECORDED / f"{name}.md").read_text()


def test_recorded_parity_of_the_shipped_export_renders_again_from_its_json(tmp_path):
    """The shipped artifacts' parity with the stress audio (the README's export table) is a recorded result too."""
    recorded = RECORDED / "parity-2026-11-26-shipped-k4"
    shutil.copy(recorded / "parity.json", tmp_path / "parity.json")
    assert veil_main(["render", str(tmp_path / "parity.json")]) == 0
    assert (tmp_path / "parity.md").read_text() == (recorded / "parity.md").read_text()


def test_headline_tables_are_rewritten_between_their_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    start, end = markers("bench")
    readme.write_text(f"# Title\n\nintro\n\n{start}\nold table\n{end}\n\n## Later\n\ntext\n")
    shutil.copy(RECORDED / "2026-11-26-vm.json", tmp_path / "bench.json")
    assert veil_main(["render", str(tmp_path / "bench.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nintro\n") and text.endswith("## Later\n\ntext\n")
    assert "| executorch int8-static | 3.35 | 3.31 | 2.72 |" in text and "rerun it with `--readme docs/results.md`" in text
    # the accuracy table comes from `veil evaluate --json`; the section is made when its markers are absent
    assert veil_main(["render", str(REPO / "models" / "metrics-normalized.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "## Accuracy" in text and "| test | 512 | 7.64 | 27.89 |" in text and text.count(markers("accuracy")[0]) == 1
    shutil.copy(RECORDED / "privacy-2026-11-26-shipped-k4-executorch-int8-static.json", tmp_path / "p.json")
    assert veil_main(["render", str(tmp_path / "p.json"), "--readme", str(readme)]) == 0
    assert "| anonymized (executorch int8-static) | 4 | 24.8 / 19.5 | 35.3 |" in readme.read_text()
    assert "pooled mean+std LR / MLP" in readme.read_text()  # every privacy number names its attacker
    # a suite report: the strongest attacker of each task, by name
    shutil.copy(RECORDED / "privacy-2026-11-26-shipped-k4-executorch-int8-static-suite-fast.json", tmp_path / "s.json")
    assert veil_main(["render", str(tmp_path / "s.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| anonymized (executorch int8-static) | 4 | 99.2 (allstats-lda-centroid) | 3.4 (allstats-plda) |" in text
    assert "pooled mean+std LR / MLP" not in text and text.count(markers("privacy")[0]) == 1
    shutil.copy(RECORDED / "serve-load-2026-11-26.json", tmp_path / "load.json")
    assert veil_main(["render", str(tmp_path / "load.json"), "--readme", str(readme)]) == 0
    assert "## Service load" in readme.read_text() and "| dynamic batching | 150 | 147.62 | 282.93 |" in readme.read_text()


def test_render_refuses_what_it_cannot_render(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "someone-else/3"}))
    assert veil_main(["render", str(other)]) == 2
    assert "no renderer for format 'someone-else/3'" in capsys.readouterr().err
    sweep = tmp_path / "sweep.json"
    shutil.copy(RECORDED / "2026-11-26-vm-sweep-executorch-int8-static.json", sweep)
    assert veil_main(["render", str(sweep), "--readme", str(tmp_path / "README.md")]) == 2
    assert "has no results-page table" in capsys.readouterr().err
    assert veil_main(["render", str(tmp_path / "missing.json")]) == 2
    readme = tmp_path / "README.md"
    start, end = markers("x")
    readme.write_text(f"{start}\n{start}\n{end}\n")
    with pytest.raises(VeilError, match="appear more than once"):
        refresh(readme, "x", "table", "X")
    readme.write_text(f"{end}\n")
    with pytest.raises(VeilError, match="only one of the markers"):
        refresh(readme, "x", "table", "X")


def test_a_service_load_result_without_the_batch_1_config_renders():
    """`serve_load --configs batching` measures one config: its report says '—' for the other, not a KeyError."""
    from toolkit.serve import load_report
    root = Path(__file__).resolve().parents[1]
    result = json.loads((root / "benchmarks" / "results" / "serve-load-2026-11-26.json").read_text())

    def without_batch_1(o):
        if isinstance(o, dict):
            return {k: without_batch_1(v) for k, v in o.items() if k != "batch-1"}
        return [without_batch_1(x) for x in o] if isinstance(o, list) else o
    one = without_batch_1(result)
    assert "batch size 1 **—**" in load_report.render_markdown(one)
    assert "batch size 1" not in load_report.headline(one).split("\n\n")[0]
