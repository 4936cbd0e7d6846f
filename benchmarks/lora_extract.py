"""LoRA extraction on a full-size SDXL pair: speed and error against kohya's SVD call, and peak memory.

Writes a synthetic full-size pair to disk: a base model (diffusers folder, fp16 UNet, shapes from the
real SDXL config) and two epoch files (fp32, diffusers names) whose change from the base has
- a flat spectrum: Gaussian noise (Marchenko-Pastur: what many small independent updates look like);
- a decaying spectrum: singular values 0.97^k (most of the change in a few directions).
Then, each in its own process:

- `ours`: charlora's extraction end to end, as the rule runs it (`lora.extract`, the guide's settings:
  rank 64, conv rank 64, clamp 0.99, fp16): wall time, the time spent in the factorisation
  (`lora.low_rank`), and the peak anonymous memory (RssAnon: the checkpoints are memory-mapped, and
  their pages are the page cache's, not the process's).
- `error`: per layer, our factorisation's Frobenius error against the best rank-r error (from the exact
  singular values, torch.linalg.svdvals; the residual in float64), before clamping and casting, which
  are the same for any method.
- `kohya`, `thin`: torch.linalg.svd(delta) as kohya's extract_lora_from_models.py calls it (full
  matrices) and with full_matrices=False, timed on every layer shape once and summed over the layers
  (LAPACK's time depends on the shape, not the values): the same factorisation work as `ours` counts.

    python benchmarks/lora_extract.py --folder /tmp/lora-bench          # full size: ~26 GB on disk
    python benchmarks/lora_extract.py --folder /tmp/lora-bench --model tiny   # a minute, to try it
    python benchmarks/lora_extract.py --folder /tmp/lora-bench --part verify  # verify.json's memory, full size
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

SPECTRA = ("flat", "decaying")
RANK = 64


class PeakRssAnon:
    """Samples this process's RssAnon (kB, /proc/self/status) every 20 ms; `.peak` in GB."""

    def __init__(self):
        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.now_kb())
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.now_kb())

    @property
    def peak(self) -> float:
        return self.peak_kb * 1024 / 1e9


def write_streamed(path: Path, tensors, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file written one tensor at a time (`tensors`: (name, shape, dtype, make) in any
    order), so that a 10 GB file never sits in memory whole."""
    import torch

    codes = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
    items = sorted(tensors, key=lambda t: t[0])
    header, offset = {"__metadata__": metadata or {}}, 0
    for name, shape, dtype, _ in items:
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": codes[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _, _, dtype, make in items:
            f.write(make().to(dtype).contiguous().view(torch.uint8).numpy().tobytes())


def make_pair(folder: Path, model: str) -> None:
    """The base folder and one epoch file per spectrum, deterministic (seeded by layer name)."""
    import shutil

    import torch

    from charlora import lora, sdxl

    config_dir = sdxl.MODEL_CONFIGS / model
    config = json.loads((config_dir / "unet" / "config.json").read_text())
    shapes = sdxl.unet_shapes(config)
    targets = {t.module + ".weight" for t in lora.targets(shapes, config, RANK, RANK)}
    base_dir = folder / "base"
    (base_dir / "unet").mkdir(parents=True, exist_ok=True)
    shutil.copy(config_dir / "unet" / "config.json", base_dir / "unet" / "config.json")
    shutil.copy(config_dir / "model_index.json", base_dir / "model_index.json")

    def base_weight(name, shape):
        return (0.02 * torch.randn(shape, generator=lora.layer_generator("base/" + name))).half()

    write_streamed(
        base_dir / "unet" / "diffusion_pytorch_model.safetensors",
        [(n, s, torch.float16, lambda n=n, s=s: base_weight(n, s)) for n, s in shapes.items()],
    )
    for spectrum in SPECTRA:

        def tuned(name, shape, spectrum=spectrum):
            weight = base_weight(name, shape).float()
            if name not in targets:
                return weight
            generator = lora.layer_generator(f"{spectrum}/{name}")
            rows, columns = shape[0], math.prod(shape[1:])
            if spectrum == "flat":
                delta = torch.randn(rows, columns, generator=generator)
            else:
                k = min(rows, columns)
                left = torch.randn(rows, k, generator=generator) / math.sqrt(rows)
                right = torch.randn(k, columns, generator=generator) / math.sqrt(columns)
                delta = (left * 0.97 ** torch.arange(k)) @ right
            return weight + 1e-3 * (delta / delta.std()).reshape(shape)

        write_streamed(
            folder / f"epoch-{spectrum}.safetensors",
            [(n, s, torch.float32, lambda n=n, s=s: tuned(n, s)) for n, s in shapes.items()],
            {"charlora.epoch": "1"},
        )


def part_ours(base: Path, epoch: Path, rank: int, out: Path) -> dict:
    from charlora import lora

    timed = {"seconds": 0.0}
    real_low_rank = lora.low_rank

    def low_rank(*args, **kwargs):
        started = time.perf_counter()
        result = real_low_rank(*args, **kwargs)
        timed["seconds"] += time.perf_counter() - started
        return result

    lora.low_rank = low_rank  # timed, not changed
    settings = lora.Settings(
        rank=rank, conv_rank=rank, clamp_quantile=0.99, min_diff=0.0, save_precision="fp16", device="cpu"
    )
    started = time.perf_counter()
    with PeakRssAnon() as memory:
        result = lora.extract(base, epoch, settings, out, {}, progress=False)
    return {
        "wall_s": time.perf_counter() - started,
        "factorisation_s": timed["seconds"],
        "peak_rss_anon_gb": memory.peak,
        "layers": result.layers,
        "file_gb": out.stat().st_size / 1e9,
        "krylov_blocks": dict(sorted(Counter(result.krylov_blocks).items())),
    }


def complete_base(folder: Path) -> Path:
    """The synthetic base as a whole SDXL diffusers folder (random VAE and text encoders beside its
    UNet, fp16), which the verification needs (it encodes prompts with the base's text encoders)."""
    import shutil

    import torch

    from charlora import lora, sdxl

    whole = folder / "whole"
    if (whole / "model_index.json").exists():
        return whole
    configs = sdxl.MODEL_CONFIGS / "sdxl"
    (whole / "unet").mkdir(parents=True, exist_ok=True)
    for name in (
        "model_index.json",
        "unet/config.json",
        "scheduler/scheduler_config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "text_encoder_2/config.json",
    ):
        (whole / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(configs / name, whole / name)
    target = whole / "unet" / "diffusion_pytorch_model.safetensors"
    if not target.exists():
        target.symlink_to((folder / "base" / "unet" / "diffusion_pytorch_model.safetensors").resolve())
    _, vae, te, te2 = sdxl.build_random("sdxl", device="meta")
    for name, module in (("vae", vae), ("text_encoder", te), ("text_encoder_2", te2)):

        def make(key, shape):
            if key.endswith("position_ids"):
                return torch.arange(shape[-1])[None]
            if "norm" in key and key.endswith(".weight"):
                return torch.ones(shape)
            return 0.02 * torch.randn(shape, generator=lora.layer_generator(f"{name}/{key}"))

        tensors = [
            (
                k,
                tuple(v.shape),
                torch.float16 if v.is_floating_point() else torch.int64,
                lambda k=k, s=tuple(v.shape): make(k, s),
            )
            for k, v in module.state_dict().items()
        ]
        write_streamed(
            whole / name / "model.safetensors"
            if name.startswith("text")
            else whole / name / "diffusion_pytorch_model.safetensors",
            tensors,
        )
    return whole


def part_verify(folder: Path, rank: int) -> dict:
    """The verification of the flat pair's LoRA on the full-size model: peak memory (VmHWM: all of
    the process's resident memory at its highest, mapped files included) and time."""
    from charlora import lora, lora_verify

    settings = lora.Settings(
        rank=rank, conv_rank=rank, clamp_quantile=0.99, min_diff=0.0, save_precision="fp16", device="cpu"
    )
    started = time.perf_counter()
    with PeakRssAnon() as memory:
        record = lora_verify.verify(
            complete_base(folder),
            folder / "epoch-flat.safetensors",
            folder / "lora-epoch-flat.safetensors",
            settings,
            "mira",
        )
    hwm = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")
    )
    return {
        "wall_s": time.perf_counter() - started,
        "peak_rss_gb": hwm * 1024 / 1e9,
        "peak_rss_anon_gb": memory.peak,
        "reproduced": record["reproduced"],
        "layers_adapted": record["loaded_by_diffusers"]["layers_adapted"],
    }


def layer_deltas(base: Path, epoch: Path, rank: int):
    """(target, 2-D delta) of every layer, read as extraction reads them."""
    from charlora import lora, sdxl

    config = sdxl.unet_config(base)
    base_weights, tuned = sdxl.UNetWeights(base, config), sdxl.UNetWeights(epoch, config)
    for target in lora.targets(sdxl.unet_shapes(config), config, rank, rank):
        name = target.module + ".weight"
        yield target, lora.weight_change(base_weights.get(name), tuned.get(name), target.shape).flatten(1)


def part_error(base: Path, epoch: Path, rank: int) -> dict:
    import torch

    from charlora import lora

    ratios = []
    for target, delta in layer_deltas(base, epoch, rank):
        up, down, _ = lora.low_rank(delta, target.rank, lora.layer_generator(target.module))
        best = torch.linalg.svdvals(delta)[target.rank :].double().square().sum().sqrt().item()
        error = (delta.double() - up.double() @ down.double()).norm().item()  # in fp32 this is off by up to 0.1 %
        ratios.append(error / best if best else 1.0)
    return {
        "layers": len(ratios),
        "worst_error_ratio": max(ratios),
        "mean_error_ratio": sum(ratios) / len(ratios),
        "layers_over_1.01": sum(r > 1.01 for r in ratios),
    }


def part_svd(base: Path, epoch: Path, rank: int, full_matrices: bool) -> dict:
    """torch.linalg.svd on one layer of each shape, times the number of layers of that shape, folded
    as kohya folds it."""
    import torch

    def factorise(delta, rank):
        U, S, Vh = torch.linalg.svd(delta, full_matrices=full_matrices)
        return U[:, :rank] @ torch.diag(S[:rank]), Vh[:rank]

    factorise(torch.randn(64, 32), 8)  # the first call's set-up is not a layer's time
    counts, seconds = Counter(), {}
    with PeakRssAnon() as memory:
        for target, delta in layer_deltas(base, epoch, rank):
            counts[delta.shape] += 1
            if delta.shape not in seconds:
                runs = []
                while len(runs) < 3 and sum(runs) < 1.0:  # the best of up to 3 runs, for the short ones
                    started = time.perf_counter()
                    factorise(delta, target.rank)
                    runs.append(time.perf_counter() - started)
                seconds[delta.shape] = min(runs)
    return {
        "factorisation_s": sum(seconds[s] * n for s, n in counts.items()),
        "shapes": len(seconds),
        "slowest_shape": "x".join(map(str, max(seconds, key=seconds.get))),
        "slowest_s": max(seconds.values()),
        "peak_rss_anon_gb": memory.peak,
    }


def run_part(*args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *map(str, args)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="where the synthetic pair is written")
    parser.add_argument("--model", default="sdxl", choices=["sdxl", "tiny"])
    parser.add_argument("--demo", type=Path, help="a workspace where the demo ran: its epoch 4 against tiny, rank 8")
    parser.add_argument(
        "--part",
        choices=["ours", "error", "kohya", "thin", "verify"],
        help="one measurement (verify: the verification's memory on the full-size pair, after a run)",
    )
    parser.add_argument("--base", type=Path)
    parser.add_argument("--epoch", type=Path)
    parser.add_argument("--rank", type=int, default=RANK)
    args = parser.parse_args()
    if args.part:
        result = {
            "ours": lambda: part_ours(
                args.base, args.epoch, args.rank, args.folder / f"lora-{args.epoch.stem}.safetensors"
            ),
            "error": lambda: part_error(args.base, args.epoch, args.rank),
            "kohya": lambda: part_svd(args.base, args.epoch, args.rank, full_matrices=True),
            "thin": lambda: part_svd(args.base, args.epoch, args.rank, full_matrices=False),
            "verify": lambda: part_verify(args.folder, args.rank),
        }[args.part]()
        print(json.dumps(result))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}", flush=True)
    if not (args.folder / "epoch-decaying.safetensors").exists():
        started = time.perf_counter()
        args.folder.mkdir(parents=True, exist_ok=True)
        make_pair(args.folder, args.model)
        print(f"wrote the pair in {time.perf_counter() - started:.0f} s", flush=True)
    cases = {
        f"{args.model}, {spectrum} spectrum": (
            args.folder / "base",
            args.folder / f"epoch-{spectrum}.safetensors",
            RANK,
        )
        for spectrum in SPECTRA
    }
    if args.demo:
        cases["demo's real delta (rank 8)"] = (
            args.demo / "results/models/tiny.safetensors",
            args.demo / "results/runs/demo/train/epoch-004.safetensors",
            8,
        )
    timings = {}  # first everything timed, on a quiet machine; then the error check, which is not timed
    for name, (base, epoch, rank) in cases.items():
        common = ["--folder", args.folder, "--base", base, "--epoch", epoch, "--rank", rank]
        timings[name] = {"ours": run_part(*common, "--part", "ours")}
        print(name, "ours:", timings[name]["ours"], flush=True)
        if "decaying" not in name:  # LAPACK's time depends on the shapes, not on the values
            for method in ("kohya", "thin"):
                timings[name][method] = run_part(*common, "--part", method)
                print(name, method, timings[name][method], flush=True)
    rows = []
    for name, (base, epoch, rank) in cases.items():
        error = run_part("--folder", args.folder, "--base", base, "--epoch", epoch, "--rank", rank, "--part", "error")
        print(name, "error:", error, flush=True)
        ours = timings[name].pop("ours")
        rows.append((name, ours, error, timings[name]))
    print(
        "\n| pair | method | factorisation s | kohya / this | extraction wall s | peak RssAnon GB "
        "| worst error / best | mean |"
    )
    print("|---|---|---|---|---|---|---|---|")
    kohya = None
    for name, ours, error, svd in rows:
        kohya = svd["kohya"]["factorisation_s"] if svd else kohya
        for method, r in svd.items():
            label = "kohya: svd(delta)" if method == "kohya" else "svd(delta, full_matrices=False)"
            print(
                f"| {name} | {label} | {r['factorisation_s']:.2f} | {kohya / r['factorisation_s']:.1f}x | | "
                f"{r['peak_rss_anon_gb']:.2f} | 1 | 1 |"
            )
        print(
            f"| {name} | ours (block Krylov, blocks {ours['krylov_blocks']}) | {ours['factorisation_s']:.2f} | "
            f"{kohya / ours['factorisation_s']:.1f}x | {ours['wall_s']:.1f} | {ours['peak_rss_anon_gb']:.2f} | "
            f"{error['worst_error_ratio']:.4f} | {error['mean_error_ratio']:.4f} |"
        )


if __name__ == "__main__":
    main()
