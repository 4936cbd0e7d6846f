"""What the end of a successful run prints: where its results are (Snakefile `onsuccess`). Light
imports only: it runs in the Snakemake process."""

from __future__ import annotations

import json
from pathlib import Path

from charlora import dedup, plan


def where_to_look(
    run: str,
    snakemake_command: str = ".venv/bin/snakemake",
    strays: dict[str, str] | None = None,
    random_base: bool = False,
) -> str:
    """Lines naming the files a user reads next, for whichever of them exist; `strays`: the dataset's
    captions and masks that no photo uses; `random_base`: the demo's random tiny model, said first."""
    lines = ["charlora: done. Where to look:"]
    if random_base:
        lines.append(
            "  note            the demo trains a random tiny model: its samples are colour noise by design, "
            'and its scorecard measures noise (README, "A real run in five steps")'
        )
    table = Path(plan.DATASET_DIR) / "dedup.tsv"
    if table.is_file():
        rows = dedup.read_table(table)
        counts = {s: sum(r.status == s for r in rows) for s in (dedup.KEPT, dedup.DUPLICATE, dedup.REJECTED)}
        lines.append(
            f"  dataset report  results/dataset/report.html  ({counts[dedup.KEPT]} of {len(rows)} files "
            f"kept, {counts[dedup.DUPLICATE]} near-duplicates, {counts[dedup.REJECTED]} rejected: "
            "see results/dataset/dedup.tsv)"
        )
        rejected = [r.file for r in rows if r.status == dedup.REJECTED]
        if rejected:
            lines.append("  rejected        " + ", ".join(rejected[:5]) + (" ..." if len(rejected) > 5 else ""))
        if strays:
            lines.append(
                "  not used        "
                + ", ".join(list(strays)[:5])
                + (" ..." if len(strays) > 5 else "")
                + "  (no photo has their name: see the report)"
            )
    run_dir = Path(plan.run_dir(run))
    if Path(plan.tensorboard_dir(run)).is_dir():
        lines.append(f"  TensorBoard     .venv/bin/tensorboard --logdir {plan.RUNS}")
    selected = Path(plan.validate_dir(run)) / "selected.json"
    if selected.is_file():
        record = json.loads(selected.read_text(encoding="utf-8"))
        chosen = "none" if record["epoch"] is None else f"epoch {record['epoch']}"
        lines.append(f"  scorecard       {selected.parent / 'scorecard.tsv'}  (selected: {chosen}, why: {selected})")
    lora = run_dir / f"{run}.safetensors"
    if lora.is_file():
        lines.append(f"  the LoRA        {lora}")
    if (run_dir / "runs.tsv").is_file():
        lines.append(f"  the runs        {run_dir / 'runs.tsv'}  (this run's record: {run_dir / 'run.yaml'})")
    lines.append(f"  run report      {snakemake_command} --report report.zip  (samples, grids, losses, scorecard)")
    return "\n".join(lines)
