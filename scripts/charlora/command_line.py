"""The command lines of the per-photo rule scripts (audit, ingest, mask, tag, caption), which
rules/common.smk's `python_script` runs as plain commands rather than through Snakemake's `script:`.

    python scripts/audit.py --id=ID --ingest=JSON --log=LOG -- PHOTO RECORD

Settings are JSON (`--NAME=JSON`); a rule's files follow `--`, in a fixed order; an optional input
(a user's own mask or caption) is `--NAME` followed by its path, or by nothing.
"""

from __future__ import annotations

import argparse
import json


def parse_args(
    description: str,
    files: list[str],
    settings: list[str] = (),
    optional_files: list[str] = (),
    named_files: list[str] = (),
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """The arguments of a per-photo script: `--log` and `--id` always (the id is optional), each of
    `settings` as parsed JSON, each of `optional_files` as a path or None, each of `named_files` as a
    path, and `files` in order."""
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0], allow_abbrev=False)
    parser.add_argument("--log", required=True, help="the rule's log file")
    parser.add_argument("--id", help="the photo's id (its file name without the extension)")
    for name in settings:
        parser.add_argument(f"--{name}", type=json.loads, required=True, help="JSON")
    for name in optional_files:
        parser.add_argument(f"--{name}", nargs="*", default=[], help="a path, or nothing")
    for name in named_files:
        parser.add_argument(f"--{name}", required=True)
    for name in files:
        parser.add_argument(name)
    args = parser.parse_args(argv)
    for name in optional_files:
        paths = getattr(args, name.replace("-", "_"))
        if len(paths) > 1:
            parser.error(f"--{name} takes one path or none, not {len(paths)}")
        setattr(args, name.replace("-", "_"), paths[0] if paths else None)
    return args
