"""The OneTrainer export on odd names (the layout itself is tested on the demo in test_workflow_dataset.py)."""

import json

from charlora import onetrainer


def test_names_onetrainer_would_skip_get_an_underscore_and_odd_names_stay(tmp_path):
    files = {}
    for image_id in ["shot-masklabel", "café {1} [b]", "x-condlabel"]:
        files[image_id] = {kind: tmp_path / f"{image_id}.{kind}" for kind in ("image", "caption")}
        for kind, path in files[image_id].items():
            path.write_text(f"{kind} of {image_id}")
    counts = onetrainer.export(
        tmp_path / "out",
        files,
        {"shot-masklabel": "train", "café {1} [b]": "train", "x-condlabel": "val"},
        token="mira",
        seed=3,
    )
    assert counts == {"train": 2, "val": 1}
    assert sorted(p.name for p in (tmp_path / "out/train").iterdir()) == [
        "café {1} [b].png",
        "café {1} [b].txt",
        "shot-masklabel_.png",
        "shot-masklabel_.txt",
    ]
    assert (tmp_path / "out/val/x-condlabel_.txt").read_text() == "caption of x-condlabel"
    concepts = json.loads((tmp_path / "out/concepts.json").read_text())
    assert [(c["name"], c["seed"]) for c in concepts] == [("mira (train)", 3), ("mira (validation)", 3)]
