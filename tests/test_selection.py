"""The checkpoint selection: what the losses say (loss_trend), the signs each scorecard row shows, the
choice and its steps on constructed tables, and the scenario suite (tests/selection/*.yaml) through the
harness a user runs, benchmarks/selection_scenarios.py."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from charlora import loss_trend, refinement, scorecard, selection
from charlora.scorecard import Row

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "tests" / "selection").glob("*.yaml"))
HARNESS = REPO / "benchmarks" / "selection_scenarios.py"


def curve(values, first=1):
    return {e: v for e, v in enumerate(values, start=first)}


def rows(epochs, cells=None):
    """Clean rows; cells: {epoch: {criterion: level}}."""
    out = []
    for e in epochs:
        levels = {
            "prompt_accuracy": "high",
            "visual_fidelity": "good",
            "generalisation": "high",
            "overfit_signs": "none",
        }
        levels.update((cells or {}).get(e, {}))
        out.append(Row(e, levels, {k: "" for k in levels}))
    return out


FALLING_THEN_FLAT = curve([0.08 + 0.04 * math.exp(-e / 2) for e in range(1, 31)])
STEADILY_FALLING = curve([0.12 - 0.002 * e for e in range(1, 31)])


# --- what the losses say ---------------------------------------------------------------------------


def test_smoothing_is_the_3_epoch_mean_inside_and_the_trend_at_the_ends():
    smoothed = loss_trend.smooth(curve([0.5, 0.4, 0.6, 0.3, 0.2]))
    assert smoothed[3] == pytest.approx((0.4 + 0.6 + 0.3) / 3)
    assert smoothed[5] == pytest.approx((5 * 0.2 + 2 * 0.3 - 0.6) / 6)  # the line through 3-5, read at 5
    assert loss_trend.smooth({1: 0.3, 2: 0.2}) == pytest.approx({1: 0.3, 2: 0.2})
    assert list(loss_trend.smooth({1: 0.3, 2: math.nan, 3: 0.2, 4: 0.1})) == [1, 3, 4]  # a NaN is a gap


def test_noise_is_the_scatter_not_the_bend():
    parabola = curve([0.1 + 0.001 * (e - 15) ** 2 for e in range(1, 31)])
    assert loss_trend.noise(parabola) == pytest.approx(0.0, abs=1e-12)
    rng = random.Random(0)
    estimates = [
        loss_trend.noise(curve([0.1 + 0.0005 * (e - 20) ** 2 + rng.gauss(0, 0.002) for e in range(1, 41)]))
        for _ in range(40)
    ]
    assert 0.0018 < sorted(estimates)[20] < 0.0022  # the median estimate: the scatter put in, whatever the bend
    assert loss_trend.noise(curve([0.3, 0.2, 0.25, 0.2])) is None  # 4 epochs: too few


def test_a_flat_curve_is_said_to_be_flat_and_starts_at_the_knee():
    rng = random.Random(1)
    flat = curve([0.1 + rng.gauss(0, 0.002) for _ in range(40)])
    minimum = loss_trend.minimum(flat, FALLING_THEN_FLAT)
    assert minimum.flat and minimum.start == minimum.knee == loss_trend.knee(FALLING_THEN_FLAT)
    assert "flat" in minimum.why and minimum.past(40) is None
    no_knee = loss_trend.minimum(flat, {})
    assert no_knee.flat and no_knee.start is None and "rows alone decide" in no_knee.why
    u = curve([0.1 + 0.0001 * (e - 20) ** 2 + rng.gauss(0, 0.0002) for e in range(1, 41)])
    assert not loss_trend.minimum(u, FALLING_THEN_FLAT).flat


def test_the_start_is_the_earliest_epoch_within_the_noise_of_the_lowest():
    plateau = curve([1.0, 0.7, 0.45, 0.401, 0.4, 0.402, 0.4, 0.398, 0.401, 0.402])
    minimum = loss_trend.minimum(plateau, {})
    assert minimum.lowest == 8 and minimum.start in (4, 5)
    v = curve([0.1 + 0.003 * abs(e - 20) for e in range(1, 41)])
    assert loss_trend.minimum(v, {}).start == 20  # a clean V: its point, not the epoch before
    assert loss_trend.minimum({1: 0.3, 2: 0.2}, {}).start == 2


def test_knee_and_still_falling():
    assert loss_trend.knee(curve([1.0, 0.5, 0.3, 0.25, 0.22, 0.2, 0.19])) == 3
    assert loss_trend.knee(curve([1.0, 0.9, 0.8, 0.7])) is None  # a straight line has no bend
    assert loss_trend.knee({1: 1.0, 2: 0.5}) is None
    assert loss_trend.slope(STEADILY_FALLING, 20).falling
    assert loss_trend.slope(FALLING_THEN_FLAT, 3).falling
    late = loss_trend.slope(FALLING_THEN_FLAT, 15)
    assert late.value < 0 and not late.falling  # still creeping down, far flatter than the run's mean
    rng = random.Random(2)
    noisy_flat = curve([0.08 + rng.gauss(0, 0.002) for _ in range(30)])
    assert sum(loss_trend.slope(noisy_flat, e).falling for e in range(1, 31)) <= 2
    assert "slope at epoch 20" in loss_trend.slope(STEADILY_FALLING, 20).words()


# --- signs and the choice --------------------------------------------------------------------------


def u_curve(minimum=20, epochs=30):
    return curve([0.1 + 0.0001 * (e - minimum) ** 2 for e in range(1, epochs + 1)])


def test_every_criterion_is_a_sign_and_no_signs_is_never_written_for_a_row_with_one():
    table = rows(range(2, 31, 2), {20: {"prompt_accuracy": "low", "generalisation": "poor", "overfit_signs": "slight"}})
    chosen = selection.select(table, u_curve(), FALLING_THEN_FLAT)
    assert chosen.epoch in (18, 22)  # the clean neighbours, equally far up the U
    assert (
        "20: overfit signs slight; prompt accuracy low, but the training loss has flattened" in chosen.steps[0]["why"]
    )
    assert not any("no overtraining" in r for r in chosen.reasons[:-1])
    assert chosen.reasons[-1] == f"epoch {chosen.epoch}: no overtraining or undertraining signs"


@pytest.mark.parametrize(
    "epoch, cells, train, kind",
    [
        (20, {"overfit_signs": "slight"}, FALLING_THEN_FLAT, selection.OVER),
        (20, {"visual_fidelity": "burned"}, FALLING_THEN_FLAT, selection.OVER),
        (16, {"visual_fidelity": "poor"}, STEADILY_FALLING, selection.UNDER),
        (16, {"visual_fidelity": "poor"}, FALLING_THEN_FLAT, ""),  # the loss no longer falls
        (16, {"prompt_accuracy": "low"}, STEADILY_FALLING, selection.UNDER),
        (24, {"prompt_accuracy": "low"}, STEADILY_FALLING, selection.OVER),  # past the start: prompt insensitivity
        (24, {"prompt_accuracy": "moderate"}, FALLING_THEN_FLAT, selection.OVER),  # dropping from high
        (24, {"generalisation": "moderate"}, FALLING_THEN_FLAT, selection.OVER),
        (16, {"generalisation": "poor"}, FALLING_THEN_FLAT, ""),
    ],
)
def test_the_signs_table(epoch, cells, train, kind):
    judge = selection.Judge(
        {r.epoch: r for r in rows(range(2, 31, 2), {epoch: cells})}, loss_trend.minimum(u_curve(), train), train
    )
    signs = judge.own_signs(epoch)
    assert [s.kind for s in signs] == [kind], [s.text for s in signs]
    assert judge.own_signs(epoch - 2) == []


def test_n_a_is_no_sign_and_ranks_as_the_middle_level():
    judge = selection.Judge(
        {r.epoch: r for r in rows([18, 20], {20: {"prompt_accuracy": "n/a"}})},
        loss_trend.minimum(u_curve(), FALLING_THEN_FLAT),
        FALLING_THEN_FLAT,
    )
    assert judge.signs(20) == [] and judge.standing(20) == (0, 0, 2, 1) and judge.standing(18) == (0, 0, 1, 1)


def test_a_mild_sign_ranks_before_a_strong_one_and_a_rollback_never_lands_on_poor():
    table = rows(
        [16, 18, 20, 22],
        {
            16: {"overfit_signs": "slight"},
            18: {"visual_fidelity": "poor"},
            20: {"overfit_signs": "present"},
            22: {"overfit_signs": "present"},
        },
    )
    chosen = selection.select(table, u_curve(), FALLING_THEN_FLAT)
    assert chosen.epoch == 16, chosen.reasons


@pytest.mark.parametrize(
    "cells, train, expect, inherits",
    [
        (
            {20: {"overfit_signs": "present"}},
            FALLING_THEN_FLAT,
            [16, 17, 18],
            23,
        ),  # not 19 (1 back), not 21-24 (after it)
        (
            {20: {"visual_fidelity": "poor"}},
            STEADILY_FALLING,
            [22, 23, 24],
            17,
        ),  # not 21 (1 ahead), not 16-19 (before it)
        ({30: {"visual_fidelity": "poor"}}, STEADILY_FALLING, [30], 26),  # the last epoch: nothing later
    ],
)
def test_an_epoch_beside_a_sign_stands_no_better_than_the_guides_2_to_4_steps(cells, train, expect, inherits):
    """Every other row is clean: the guide still steps 2-4 epochs from the sign, and overtraining past the
    start (undertraining before it) does not heal, whatever the rows there say."""
    val = u_curve() if 20 in cells else curve([0.2 - 0.003 * e for e in range(1, 31)])
    table = rows(range(10, 31), cells)
    chosen = selection.select(table, val, train)
    assert chosen.epoch in expect, chosen.reasons
    judge = selection.Judge({r.epoch: r for r in table}, loss_trend.minimum(val, train), train)
    [epoch] = cells
    assert judge.standing(inherits) == judge.standing(epoch)


def test_the_guides_matrix_ranks_18_and_20_before_22_and_26_last():
    matrix = {
        18: {"visual_fidelity": "excellent", "generalisation": "moderate"},
        20: {},
        22: {"prompt_accuracy": "moderate", "overfit_signs": "slight"},
        26: {
            "prompt_accuracy": "low",
            "visual_fidelity": "over-sharpened",
            "generalisation": "poor",
            "overfit_signs": "present",
        },
    }
    table = rows([18, 20, 22, 26], matrix)
    for minimum in (20, 22, 26):
        chosen = selection.select(table, u_curve(minimum), FALLING_THEN_FLAT)
        assert chosen.epoch in (18, 20), (minimum, chosen.reasons)
    judge = selection.Judge(
        {r.epoch: r for r in table}, loss_trend.minimum(u_curve(22), FALLING_THEN_FLAT), FALLING_THEN_FLAT
    )
    assert sorted(matrix, key=judge.rank)[2:] == [22, 26]


def test_overfit_signs_roll_back_again_until_clean_and_each_step_is_recorded():
    table = rows(range(10, 31, 2), {e: {"overfit_signs": "present"} for e in range(16, 31, 2)})
    chosen = selection.select(table, u_curve(), FALLING_THEN_FLAT)
    assert chosen.epoch in (12, 14) and chosen.start == 20
    actions = [s["action"] for s in chosen.steps]
    assert actions[0] == "best candidate" and actions[-1] == "stop" and "roll back" in actions
    assert chosen.steps[-1]["epoch"] == chosen.epoch


def test_undertraining_advances_while_the_training_loss_falls():
    table = rows(range(2, 31, 2), {e: {"visual_fidelity": "poor"} for e in range(2, 25, 2)})
    assert selection.select(table, u_curve(), STEADILY_FALLING).epoch == 26
    flat = selection.select(table, u_curve(), FALLING_THEN_FLAT)
    assert flat.epoch == 20  # poor everywhere, the loss has flattened: more training will not help
    assert "the training loss has flattened" in flat.reasons[-1]


def test_the_words_say_how_the_training_loss_fails_to_fall():
    rising = {e: 0.1 + 0.002 * e for e in range(1, 21)}
    assert loss_trend.slope(rising, 10).how_not_falling() == "no longer falls"
    noisy = {e: 0.1 - 0.0005 * e + (0.01 if e % 2 else -0.01) for e in range(1, 21)}  # down by less than its noise
    assert not loss_trend.slope(noisy, 10).falling
    assert loss_trend.slope(noisy, 10).how_not_falling() == "falls no more than its noise"
    flattened = {e: 0.05 + 0.1 * math.exp(-e / 2) for e in range(1, 31)}  # steep early, a creep at the end
    assert not loss_trend.slope(flattened, 26).falling
    assert loss_trend.slope(flattened, 26).how_not_falling().startswith("has flattened (under 50 %")
    assert loss_trend.slope({3: 0.1}, 3).how_not_falling() == "cannot be told to fall"


def test_a_step_never_lands_on_a_rejected_nan_or_worse_row_and_names_what_would_settle_it():
    val = u_curve()
    val[18] = math.nan
    table = rows([12, 14, 16, 18, 19, 20], {20: {"overfit_signs": "present"}, 16: {"visual_fidelity": "poor"}})
    table[0].reject = True
    chosen = selection.select(table, val, FALLING_THEN_FLAT, saved=list(range(1, 31)))
    assert chosen.epoch == 19
    assert chosen.reasons[:2] == ["rejected by review: epoch 12", "no finite validation loss: epoch 18 (never chosen)"]
    only_20 = selection.select(
        rows([10, 20], {20: {"overfit_signs": "present"}}), u_curve(), FALLING_THEN_FLAT, saved=list(range(1, 31))
    )
    assert only_20.epoch == 20 and only_20.to_sample == [16, 17, 18, 19]
    assert "samples of epoch 16, 17, 18, 19 would settle it: add them to validate.epochs" in only_20.reasons[-1]


def test_a_start_far_from_every_saved_epoch_says_to_save_more_often():
    """A long run saved every 48th epoch whose validation loss is lowest at 6: nothing near the start can
    be sampled, so the nearest sampled epoch is kept and the reason says how to get one nearer."""
    val = u_curve(minimum=6, epochs=96)
    sparse = selection.select(rows([48, 96]), val, STEADILY_FALLING, saved=[48, 96])
    assert sparse.epoch == 48 and sparse.to_sample == []
    assert any("no epoch within 4 of epoch" in r and "a lower train.save_every" in r for r in sparse.reasons)
    dense = selection.select(rows([48, 96]), val, STEADILY_FALLING, saved=list(range(1, 97)))
    assert not any("train.save_every" in r for r in dense.reasons) and dense.to_sample  # saved: sample them


def test_the_resemblance_tells_rows_of_the_same_levels_apart_unless_the_review_set_the_fidelity():
    """Softer than the base at every epoch, every row's fidelity is "poor": the one that looks like her (her
    resemblance "good") stands better than the nearer one that does not, and the reasons say why. A review
    that sets the fidelity is the user's whole word on it: their "poor" is the resemblance too."""
    val = u_curve(minimum=8, epochs=16)
    table = rows([8, 12], {8: {"visual_fidelity": "poor"}, 12: {"visual_fidelity": "poor"}})
    table[0].resemblance, table[1].resemblance = "poor", "good"
    chosen = selection.select(table, val, FALLING_THEN_FLAT)
    assert chosen.epoch == 12 and "resemblance good" in chosen.reasons[-1]
    scorecard.apply_review(table[1], scorecard.Review(levels={"visual_fidelity": "poor"}))
    assert selection.select(table, val, FALLING_THEN_FLAT).epoch == 8


def test_nothing_to_select_is_said_not_raised():
    none = selection.select([], u_curve(), FALLING_THEN_FLAT)
    assert none.epoch is None and none.reasons[-1].startswith("no epoch can be selected: no epoch was sampled")
    table = rows([2, 4])
    for row in table:
        row.reject = True
    rejected = selection.select(table, u_curve(4, 6), FALLING_THEN_FLAT)
    assert rejected.epoch is None and "every sampled epoch is rejected" in rejected.reasons[-1]


TEN_EPOCHS_TRAIN = curve([1.0 - 0.01 * e for e in range(10)])


@pytest.mark.parametrize(
    "val, cells, rejected, expect",
    [
        ([1.0, 0.8, 0.6, 0.45, 0.4, 0.45, 0.6, 0.8, 1.0, 1.2], {}, [], 5),  # a clear minimum
        ([1.0, 0.7, 0.45, 0.401, 0.4, 0.402, 0.4, 0.398, 0.401, 0.402], {}, [], 5),  # a plateau: its start
        ([1.0, 0.8, 0.6, 0.45, 0.4, 0.45, 0.6, 0.8, 1.0, 1.2], {}, [5], 4),  # the minimum rejected
        (
            [1.0, 0.8, 0.6, 0.5, 0.45, 0.42, 0.4, 0.45, 0.6, 0.8],
            {6: {"overfit_signs": "present"}, 7: {"overfit_signs": "present"}},
            [],
            4,
        ),  # rolled back 2 from 6
        ([1.0, 0.8, 0.3, 0.75, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55], {}, [], 6),  # one dip at 3 decides nothing
    ],
)
def test_the_answers_on_small_tables(val, cells, rejected, expect):
    """The cases the selection answered before this rule (scorecard.select), with the same answers; the
    dip case chooses 6, within the noise of the smoothed minimum at 7 and nearer the start."""
    table = rows(range(1, 11), cells)
    for row in table:
        row.reject = row.epoch in rejected
    assert selection.select(table, curve(val), TEN_EPOCHS_TRAIN).epoch == expect


def test_undertrained_with_nothing_sampled_later_keeps_it_and_names_what_would_settle_it():
    val = curve([1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.41, 0.42, 0.43, 0.44])
    train = curve([1.0, 0.8, 0.6, 0.5, 0.42, 0.36, 0.3, 0.28, 0.27, 0.27])  # still falling at 6
    assert selection.select(rows([2, 4, 6, 9, 10], {6: {"visual_fidelity": "poor"}}), val, train).epoch == 9
    kept = selection.select(rows([2, 4, 6], {6: {"visual_fidelity": "poor"}}), val, train)
    assert kept.epoch == 6 and kept.to_sample == [7, 8, 9, 10]
    assert "samples of epoch 7, 8, 9, 10 would settle it: add them to validate.epochs" in kept.reasons[-1]


def test_the_selection_file_keeps_its_keys_and_adds_the_steps(tmp_path):
    chosen = selection.select(rows(range(2, 31, 2)), u_curve(), FALLING_THEN_FLAT)
    selection.write_selection(tmp_path / "selected.json", chosen)
    record = json.loads((tmp_path / "selected.json").read_text())
    assert list(record)[:4] == ["epoch", "lowest_validation_loss_smoothed", "knee", "start"]
    assert {"reasons", "steps", "to_sample", "flat", "noise"} <= set(record)
    assert selection.read_selection(tmp_path / "selected.json") == record["epoch"] == 20


def test_refinement_samples_around_the_same_start_as_the_selection():
    saved = list(range(1, 41))
    val = u_curve(30, 40)
    val[10] -= 0.06  # one dip far from the curve's minimum
    result = refinement.refine(saved, [5, 10, 15, 20, 25, 30, 35, 40], FALLING_THEN_FLAT, val)
    assert result.start == selection.select(rows([30]), val, FALLING_THEN_FLAT).start == 30
    assert result.epochs == [e for e in range(22, 39) if e % 5]


# --- the scenario suite -----------------------------------------------------------------------------


def harness(*arguments):
    return subprocess.run(
        [sys.executable, str(HARNESS), *map(str, arguments)], capture_output=True, text=True, cwd=REPO
    )


def test_the_scenario_suite_decides_as_the_guide_would():
    assert len(SCENARIOS) >= 25
    run = harness(*SCENARIOS, "--json")
    results = json.loads(run.stdout)
    failed = [f"{r['name']}: {r['problems']} {r['reasons']}" for r in results if not r["ok"]]
    assert not failed and run.returncode == 0, "\n".join(failed)
    assert [r["name"] for r in results] == [p.stem for p in SCENARIOS]
    assert all({"name", "chosen", "expect", "ok", "reasons"} <= set(r) for r in results)
    for path in SCENARIOS:  # each cites the issue bullet it tests
        assert path.read_text().count("\nbullet: ") == 1, path.name


ISSUE_EXAMPLE = """\
why: overfit signs at the minimum: roll back 2-4 epochs   # one line, from the guide
every: 2                      # validate.every (informational; save_every is 1)
epochs:                       # every trained epoch; val and train are the epoch's mean losses
  19: {val: 0.1016, train: 0.092}
  20: {val: 0.1000, train: 0.091, levels: {prompt_accuracy: high, visual_fidelity: good,
                                           generalisation: high, overfit_signs: present}}
review: {20: {reject: true}}  # optional, as the review files
expect: [16, 17, 18]          # acceptable epochs
"""


def test_the_harness_takes_the_issues_format_and_fails_on_a_choice_outside_expect(tmp_path):
    (tmp_path / "example.yaml").write_text(ISSUE_EXAMPLE)
    run = harness(tmp_path / "example.yaml", "--json")
    [result] = json.loads(run.stdout)
    assert run.returncode == 1 and not result["ok"] and result["chosen"] is None and result["expect"] == [16, 17, 18]
    assert result["reasons"][0] == "rejected by review: epoch 20" and result["to_sample"] == [19]
    (tmp_path / "good.yaml").write_text(
        ISSUE_EXAMPLE.replace("review: {20: {reject: true}}", "").replace("expect: [16, 17, 18]", "expect: [20]")
    )
    text = harness(tmp_path / "good.yaml")
    assert text.returncode == 0 and text.stdout.startswith("ok   good: chose 20")
    (tmp_path / "bad.yaml").write_text(ISSUE_EXAMPLE.replace("present}", "plenty}"))
    bad = harness(tmp_path / "bad.yaml")
    assert (
        bad.returncode == 2
        and "bad.yaml: epoch 20: levels: overfit_signs: 'plenty' is not a scorecard level" in bad.stderr
    )
