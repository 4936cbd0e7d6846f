"""Rule caption_lint: lint every kept photo's caption into lint.tsv."""

import json
from pathlib import Path

from charlora import logs
from charlora.captions import Vocabulary, lint, write_lint_table
from charlora.tokenizer import CaptionTokens

log = logs.setup(snakemake.log[0])
records = {Path(p).stem: json.loads(Path(p).read_text(encoding="utf-8")) for p in snakemake.input.records}
tokens = CaptionTokens.load()
rows = lint(
    records,
    snakemake.params.token,
    Vocabulary.load(snakemake.input.vocabulary),
    snakemake.params.generic,
    tokens.count,
    snakemake.params.max_tokens,
    tokens.cut,
)
issues = sum(len(r.issues) for r in rows)
log.info("%d captions, %d issues", len(rows), issues)
truncated = [r for r in rows if r.cut]
for row in truncated:
    log.warning("caption of %s would be cut: '%s'", row.id, row.cut)
if truncated and snakemake.params.strict:
    raise SystemExit(
        f"{len(truncated)} caption(s) longer than {snakemake.params.max_tokens} tokens "
        f"(strict: true): {', '.join(r.id for r in truncated)}"
    )
write_lint_table(rows, snakemake.output[0])
