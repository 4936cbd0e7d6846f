"""Run charlora's checkpoint selection (scripts/charlora/selection.py) on scenario files and say whether
each choice is one the scenario accepts.

    .venv/bin/python benchmarks/selection_scenarios.py tests/selection/*.yaml [--json]

A scenario is a run as the selection sees it (format and keys: tests/selection/README.md):

    why: overfit signs at the minimum: roll back 2-4 epochs   # one line, from the guide
    every: 2                      # validate.every (informational unless refinement_covers is given)
    epochs:                       # every trained epoch; val and train are the epoch's mean losses
      19: {val: 0.1016, train: 0.092}
      20: {val: 0.1000, train: 0.091, levels: {prompt_accuracy: high, visual_fidelity: good,
                                               generalisation: high, overfit_signs: present}}
    review: {20: {reject: true}}  # optional, as the review files
    expect: [16, 17, 18]          # acceptable epochs ([]: no epoch can be selected)

The epochs with `levels` are the sampled ones (a criterion left out is "n/a"; `resemblance`, optional, is
the identity's own level that a fidelity flag can hide: excellent, good or poor); reviews are applied on
top as the workflow applies review files; no row is invented for the others. Optional checks:
`saved` (the saved epochs; default every listed epoch), `expect_to_sample` (epochs selected.json's
`to_sample` must name), `expect_flat` (true or false), `refinement_covers` (epochs the refinement
must sample, after a coarse pass of every `every`-th saved epoch and the last).

Prints a line per scenario, or with --json a JSON list of {"name", "chosen", "expect", "ok", "reasons",
...}; exits 1 when a choice (or check) fails, 2 when a file is not a valid scenario.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from charlora import plan, refinement, scorecard, selection  # noqa: E402
from charlora.config import ConfigError  # noqa: E402

KEYS = {
    "why",
    "bullet",
    "every",
    "epochs",
    "review",
    "expect",
    "saved",
    "expect_to_sample",
    "expect_flat",
    "refinement_covers",
}
EPOCH_KEYS = {"val", "train", "levels", "resemblance"}


class ScenarioError(Exception):
    pass


def number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: expected a number (or .nan), not {value!r}")
    return float(value)


def epochs_list(value, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in value):
        raise ScenarioError(f"{where}: expected a list of epochs, e.g. [16, 17, 18]")
    return value


def one_line_values(text: str) -> str:
    """Top-level one-line values quoted where they hold ": " (`why: overfit signs at the minimum: roll
    back 2-4 epochs`), which YAML would otherwise read as a nested mapping; a trailing comment stays one."""
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z_]\w*):[ \t]+([^\s\[{\"'|>&*!%@`#].*?)([ \t]+#.*)?", line)
        if match and ": " in match.group(2):
            line = f"{match.group(1)}: {json.dumps(match.group(2).rstrip())}{match.group(3) or ''}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def read_scenario(path: Path) -> dict:
    """The scenario's losses, rows and checks; a wrong key or level is an error naming the file."""
    try:
        data = yaml.safe_load(one_line_values(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("epochs"), dict) or "expect" not in data:
        raise ScenarioError(f"{path}: a scenario has `epochs:` (epoch: {{val, train, levels}}) and `expect:`")
    unknown = set(data) - KEYS
    if unknown:
        raise ScenarioError(
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; the keys are {', '.join(sorted(KEYS))}"
        )
    val, train, rows = {}, {}, {}
    for epoch, entry in sorted(data["epochs"].items()):
        where = f"{path}: epoch {epoch}"
        if not isinstance(epoch, int) or epoch < 1 or not isinstance(entry, dict) or set(entry) - EPOCH_KEYS:
            raise ScenarioError(f"{where}: expected `<epoch>: {{val: ..., train: ..., levels: {{...}}}}`")
        if "val" in entry:
            val[epoch] = number(entry["val"], f"{where}: val")
        if "train" in entry:
            train[epoch] = number(entry["train"], f"{where}: train")
        if "levels" in entry:
            levels = entry["levels"]
            if not isinstance(levels, dict):
                raise ScenarioError(f"{where}: levels: expected criterion: level")
            for criterion, level in levels.items():
                if criterion not in scorecard.LEVELS or level not in scorecard.LEVELS[criterion] + ["n/a"]:
                    raise ScenarioError(f"{where}: levels: {criterion}: {level!r} is not a scorecard level")
            resemblance = entry.get("resemblance", "n/a")
            if resemblance not in scorecard.RESEMBLANCE_LEVELS + ["n/a"]:
                raise ScenarioError(
                    f"{where}: resemblance: {resemblance!r} is not one of {', '.join(scorecard.RESEMBLANCE_LEVELS)}"
                )
            rows[epoch] = scorecard.Row(
                epoch,
                {c: levels.get(c, "n/a") for c in scorecard.CRITERIA},
                {c: "given by the scenario" for c in scorecard.CRITERIA},
                val_loss=val.get(epoch),
                train_loss_smoothed=train.get(epoch),
                resemblance=resemblance,
            )
    reviews = data.get("review") or {}
    if not isinstance(reviews, dict):
        raise ScenarioError(f"{path}: review: expected epoch: {{reject: true, ...}}")
    for epoch, review in reviews.items():
        try:
            parsed = scorecard.review_from(review, f"{path}: review of epoch {epoch}")
        except ConfigError as exc:
            raise ScenarioError(str(exc)) from None
        if epoch in rows:  # as the workflow: a review of an epoch that was not sampled is ignored
            scorecard.apply_review(rows[epoch], parsed)
    expect = data["expect"] if data["expect"] is not None else []
    return {
        "val": val,
        "train": train,
        "rows": [rows[e] for e in sorted(rows)],
        "saved": epochs_list(data.get("saved", sorted(data["epochs"])), f"{path}: saved"),
        "expect": epochs_list(expect if isinstance(expect, list) else [expect], f"{path}: expect"),
        "every": data.get("every"),
        "to_sample": epochs_list(data.get("expect_to_sample", []), f"{path}: expect_to_sample"),
        "flat": data.get("expect_flat"),
        "covers": epochs_list(data.get("refinement_covers", []), f"{path}: refinement_covers"),
    }


def run(path: Path) -> dict:
    """The selection's answer on one scenario file, and whether the scenario accepts it."""
    s = read_scenario(path)
    chosen = selection.select(s["rows"], s["val"], s["train"], s["saved"])
    problems = []
    if (chosen.epoch not in s["expect"]) if s["expect"] else chosen.epoch is not None:
        problems.append(f"chose {chosen.epoch}, expected one of {s['expect'] or 'none'}")
    missing = sorted(set(s["to_sample"]) - set(chosen.to_sample))
    if missing:
        problems.append(f"to_sample {chosen.to_sample} does not name {missing}")
    if s["flat"] is not None and chosen.flat != s["flat"]:
        problems.append(f"flat is {chosen.flat}, expected {s['flat']}")
    refined = []
    if s["covers"]:
        if not isinstance(s["every"], int) or s["every"] < 1:
            raise ScenarioError(f"{path}: refinement_covers needs `every:` (validate.every)")
        coarse = plan.sampled_epochs(s["saved"], s["every"])
        refined = refinement.refine(s["saved"], coarse, s["train"], s["val"]).epochs
        uncovered = sorted(set(s["covers"]) - set(coarse) - set(refined))
        if uncovered:
            problems.append(f"the refinement does not sample {uncovered} (it adds {refined})")
    return {
        "name": path.stem,
        "chosen": chosen.epoch,
        "expect": s["expect"],
        "ok": not problems,
        "reasons": chosen.reasons,
        "problems": problems,
        "to_sample": chosen.to_sample,
        "flat": chosen.flat,
        "noise": None if chosen.noise is None or not math.isfinite(chosen.noise) else chosen.noise,
        "steps": chosen.steps,
        "refined": refined,
        "file": str(path),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print a JSON list of the results")
    args = parser.parse_args(argv)
    try:
        results = [run(path) for path in args.files]
    except ScenarioError as exc:
        print(f"selection_scenarios: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['name']}: chose {r['chosen']} (expect {r['expect']})")
            for line in r["problems"] + ([] if r["ok"] else [f"    {x}" for x in r["reasons"]]):
                print(f"    {line}")
        print(f"{sum(r['ok'] for r in results)} of {len(results)} scenarios ok")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
