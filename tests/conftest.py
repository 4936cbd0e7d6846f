import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The tiny SDXL-topology checkpoint, written once per test session as the workflow writes it."""
    from charlora import sdxl

    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    sdxl.write_tiny(path, seed=0)
    return path


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    """A workspace where `snakemake dataset` ran on the shipped demo: curated, masked, captioned, split.
    Tests that change it work on a copy (`copy_workspace`)."""
    from workflow import make_workspace, snakemake

    ws = make_workspace(tmp_path_factory.mktemp("demo"))
    snakemake(ws, "dataset")
    return ws


@pytest.fixture(scope="session")
def trained(demo_dataset, tmp_path_factory):
    """(workspace, its Snakemake run) after the default target on a copy of `demo_dataset`: 4 epochs
    in 2 jobs, the validation samples and sheets, the LoRA. Tests that change it work on a copy."""
    from workflow import copy_workspace, snakemake

    ws = copy_workspace(demo_dataset, tmp_path_factory.mktemp("trained") / "ws")
    return ws, snakemake(ws)
