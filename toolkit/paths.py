"""Where things live by default: the repository root and the folders and files under it.

Every default path of every command comes from here, so a library module never has to ask the command line
for one. Paths are absolute (resolved from this file), so commands work from any working directory.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT / "data" / "corpus"
MODELS_DIR = REPO_ROOT / "models"
# every command's default: the most private point that recognizes (test WER <= 35 %): the phone runs 6 blocks and
# sends 16 dims at unit RMS plus N(0, 0.5^2) noise (models/README.md)
DEFAULT_MODEL = MODELS_DIR / "k6-d16-n0.5.safetensors"
# the same phone blocks without the bottleneck and its noise: recognizes, but does not hide the speaker
NORMALIZED = MODELS_DIR / "normalized.safetensors"
EXPORTS_DIR = REPO_ROOT / "exports"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_PAGE = REPO_ROOT / "docs" / "results.md"  # every result table, generated (`--readme docs/results.md`)
TESTVECTORS_DIR = REPO_ROOT / "testvectors"  # the streaming protocol's cross-language test vectors


def export_dir_name(checkpoint: str | Path, split_layer: int, variant: str = "") -> str:
    """The folder name of an export: ``<checkpoint stem>-k<split layer>`` and, for a variant of the same
    prefix (other recipes, a cache key), ``-<variant>``."""
    return f"{Path(checkpoint).stem}-k{split_layer}" + (f"-{variant}" if variant else "")


def default_export_dir(checkpoint: str | Path, split_layer: int, variant: str = "") -> Path:
    """``exports/<checkpoint stem>-k<split layer>[-variant]``: where ``export-prefix`` writes by default."""
    return EXPORTS_DIR / export_dir_name(checkpoint, split_layer, variant)


def display_path(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it (how results and READMEs name files)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
