"""Shared fixtures: a tiny real corpus (synthesized by the real builder) and a small 2-block model."""
from __future__ import annotations

import os

import pytest
import torch

from toolkit.data.corpus_build import CorpusPlan, build_corpus
from toolkit.model.asr import ModelConfig, VeilModel

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on two cores: one torch thread each, or they oversubscribe the cores
    torch.set_num_threads(1)

TINY_PLAN = CorpusPlan(n_speakers=6, n_eval_speakers=2, train_per_speaker=3, dev_per_speaker=1,
                       test_per_speaker=1, eval_per_speaker=2)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The corpus every test reads: tiny, synthesized by the real builder with a fixed seed, so it is the same on
    every machine. Never data/corpus (what `make demo` builds): a developer's machine tests what CI tests."""
    root = tmp_path_factory.mktemp("corpus") / "tiny"
    build_corpus(root, seed=7, size=1.0, plan=TINY_PLAN, progress=False, jobs=2)
    return root


@pytest.fixture(scope="session")
def tiny_corpus(corpus):
    """The same corpus under its earlier name (files being edited elsewhere still ask for it)."""
    return corpus


def small_config(**overrides) -> ModelConfig:
    base = dict(n_blocks=2, split_layer=1, d_model=64, n_heads=4, subsampling_channels=16, dropout=0.0,
                chunk_samples=16000, grl_layers=[1], n_speakers=4)
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return VeilModel(small_config()).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Converters and runtimes are timed and checked for determinism on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
