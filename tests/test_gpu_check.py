"""The GPU benchmarks: benchmarks/gpu_check.py runs charlora's own training step, sampler and extraction
(here on the tiny model on the CPU, --tiny) and says what it did not measure without CUDA;
benchmarks/device_outputs.py says so where onnxruntime has no CUDA provider."""

import json
import os
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def figures(*args, env=None) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=True, timeout=900
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {line["figure"]: line for line in lines}


def test_the_gpu_check_measures_every_figure_with_charloras_own_code_on_the_tiny_model():
    found = figures("--tiny", "--steps", "3")
    assert list(found) == [
        "device",
        "training step (fused backward)",
        "training step (not fused)",
        "sample",
        "extraction",
    ]
    fused, not_fused = found["training step (fused backward)"], found["training step (not fused)"]
    assert fused["s_per_step"] > 0 and fused["warm_up_steps"] == 2 and fused["batch"] == 2
    assert (fused["optimizer"], fused["precision"]) == ("adafactor", "bf16")  # the defaults
    assert abs(fused["loss"] - not_fused["loss"]) < 1e-3  # the same steps: fusing moves the update, not the maths
    assert found["sample"]["s_per_image"] > 0 and found["sample"]["size"] == [64, 64]
    assert found["extraction"]["layers"] == 788 and found["extraction"]["seconds"] > 0  # every UNet layer


def test_without_cuda_it_says_what_it_did_not_measure():
    found = figures(env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert set(found) == {"training step (fused backward)", "training step (not fused)", "sample", "extraction"}
    assert {line["result"] for line in found.values()} == {"not measured: no GPU"}


def test_the_comparison_of_masks_and_tags_on_cuda_says_when_onnxruntime_has_no_cuda():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "device_outputs.py")], capture_output=True, text=True, check=True
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[-1] == {
        "figure": "CUDA against the CPU",
        "result": "not measured: this onnxruntime has no CUDA provider",
    }
