"""Where the dataset stage's models run: config `masks.device` (rembg) and `captions.device` (the WD14
and VLM taggers), each auto, cpu, cuda or cuda:N.

ONNX models (rembg, WD14) run on onnxruntime's CUDA provider, which only the `onnxruntime-gpu` package
has (envs/requirements-gpu.txt installs it instead of `onnxruntime`: the two cannot be installed
together). auto takes CUDA where that provider is there and the CPU otherwise; cuda where it is not
there is an error that says what to install. The VLM tagger runs on torch's device the same way.
"""

from __future__ import annotations

from charlora.config import ConfigError

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _gpu_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def onnx_providers(device: str, key: str) -> list:
    """onnxruntime's providers for config `device` (named by `key` in messages), the CPU last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and CUDA not in available):
        return [CPU]
    if CUDA not in available:
        raise ConfigError(
            f"{key}: {device}, but this onnxruntime has no CUDA provider ({', '.join(available)}): "
            "install envs/requirements-gpu.txt (onnxruntime-gpu in place of onnxruntime), or set it to cpu"
        )
    # The CUDA provider needs CUDA's and cuDNN's libraries; pip puts them in the nvidia-* packages (torch's
    # too), where the loader does not look. onnxruntime-gpu's own preload finds them there; without it the
    # provider falls back to the CPU unless torch was imported first.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return [(CUDA, {"device_id": _gpu_index(device)}), CPU]


def onnx_words(session) -> str:
    """What a session runs on, for the log: the provider that took the model (a CUDA provider whose
    libraries are missing falls back to the CPU without an error, so this reads what it got)."""
    used = session.get_providers()
    return "CUDA (onnxruntime-gpu)" if used and used[0] == CUDA else "CPU"


def torch_device(device: str, key: str):
    """torch's device for config `device` (named by `key` in messages)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {device}, but torch sees no CUDA device; set it to cpu or auto")
    return torch.device(device)
