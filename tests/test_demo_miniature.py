"""The demo as a user runs it (config/demo.yaml as shipped): mira fine-tuned from the miniature base, a
small model pretrained on drawn people who are not her. Her magenta hair, which the base never drew,
must arrive in the samples, and the selection must pick an epoch that shows it. The scorecard reads it
too: on the miniature base, the demo's identity is the share of her samples that show the hair.

The base does not draw her hair (the probe reads it in none of epoch 0's "mira" samples). At the
selected epoch it reads it in half of them: in nearly all of seed 0's, in few of seed 1's. Seed 0 is
the exception, not seed 1: validated at six seeds, the hair reads in most close-ups of every seed by
epoch 12, and in few of their mid and full-body shots, where it comes out a pale pink; only seed 0's
violet cast leans those towards her magenta (docs/miniature.md). The issue's 70 % is not reached."""

import json
import shutil

from charlora import miniature, sample_metrics, scorecard
from workflow import REPO, copy_workspace, snakemake

VALIDATE = "results/runs/demo/validate"


def test_the_shipped_demo_learns_miras_hair_and_selects_an_epoch_that_draws_it(demo_dataset, tmp_path):
    ws = copy_workspace(demo_dataset, tmp_path / "ws")  # the dataset stage is the same; only the run differs
    shutil.copy2(REPO / "config" / "demo.yaml", ws / "config" / "demo.yaml")
    result = snakemake(ws)
    assert "the miniature base, pretrained on drawn people" in result.stdout
    assert (ws / "results/models/miniature.safetensors").is_file()
    assert not (ws / "results/models/tiny.safetensors").exists()

    validate = ws / VALIDATE
    selected = json.loads((validate / "selected.json").read_text())["epoch"]
    by_epoch = miniature.trait_by_epoch(validate, "mira")
    assert by_epoch[0].adherence >= 0.8 and by_epoch[0].shown <= 0.1, by_epoch  # prompts followed, no hair
    assert selected > 0 and by_epoch[selected].shown >= 0.4, (selected, by_epoch)  # the hair arrived
    assert by_epoch[selected].adherence >= 0.8, by_epoch  # and the prompts are still followed
    rows = {row.epoch: row for row in scorecard.read_scorecard(validate / "scorecard.tsv")}
    assert rows[selected].method.startswith("adherence: pixel probe")
    assert rows[selected].levels["prompt_accuracy"] != "n/a"
    # identity: the share of her samples that show her hair, which the scorecard grades as it grades faces
    assert rows[selected].method.endswith(f"identity: {sample_metrics.TRAIT_PROBE}")
    for epoch, row in rows.items():
        assert row.evidence["visual_fidelity"].startswith(f"her trait in {by_epoch[epoch].shown:.0%} of the samples")
        # its own level, which the selection reads where softer samples make every row's fidelity poor
        share = scorecard.graded(by_epoch[epoch].shown, scorecard.MATCH_EXCELLENT, scorecard.MATCH_GOOD)
        assert row.resemblance == scorecard.worst_level("visual_fidelity", share), (epoch, row.resemblance)
    assert (ws / "results/runs/demo/demo.safetensors").is_file()
