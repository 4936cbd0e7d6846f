"""Rule models (`snakemake models`): the model files the config names, checked and described
(charlora/model_files.py); printed, and kept in the rule's log."""

from pathlib import Path

from charlora import atomic, model_files

table = model_files.report(snakemake.config)
print(table, flush=True)
with atomic.atomic_path(Path(snakemake.log[0])) as tmp:
    Path(tmp).write_text(table + "\n", encoding="utf-8")
