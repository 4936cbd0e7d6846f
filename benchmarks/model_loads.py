"""Benchmark: masks and tags with real-size stand-in models, one model load per photo (the parent
commit's per-photo jobs, from a git worktree) against one load per batch (this checkout), side by side
in one run.

The stand-ins have real architectures and sizes, with random weights (nothing is downloaded):
  - a WD14-class tagger: a ViT-B/16 at 448 px (timm) with 10,861 tag scores, taking WD14's input
    (N x 448 x 448 x 3, BGR, 0-255), exported to ONNX with its selected_tags.csv;
  - a U2-Net (Qin et al. 2020: RSU-7/6/5/4/4F encoder and decoder, six side outputs), 1 x 3 x 320 x 320
    -> 1 x 1 x 320 x 320, exported to ONNX and run through rembg's u2net_custom session.
Each design runs every photo's mask job and tag job as its own process, as Snakemake runs them (one
after another, in a workspace holding the ingested photos and dedup.tsv), and the figures are: wall
time of all jobs, the model's load time (measured in-process, x the loads each design makes) and its
share of the time. Then the masks and tags of both designs are compared byte for byte.

    .venv/bin/python benchmarks/model_loads.py [--photos 50] [--parent REV] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from charlora import masks, tags  # noqa: E402

TAGS = 10_861  # WD EVA02-Large tagger v3's tag count


# --- U2-Net ---------------------------------------------------------------------------------------


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU(True)
        )


class RSU(nn.Module):
    """U2-Net's residual U-block of `height` levels (pooled; `dilated`: RSU-4F, dilations instead)."""

    def __init__(self, height: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        self.conv_in = ConvBnRelu(cin, cout)
        rates = [2**i for i in range(height)] if dilated else [1] * (height - 1) + [2]
        self.down = nn.ModuleList([ConvBnRelu(cout, mid, rates[0])] + [ConvBnRelu(mid, mid, r) for r in rates[1:]])
        self.up = nn.ModuleList([ConvBnRelu(2 * mid, mid, r) for r in rates[-2:0:-1]] + [ConvBnRelu(2 * mid, cout)])

    def forward(self, x):
        hx_in = self.conv_in(x)
        skips, h = [], hx_in
        for i, conv in enumerate(self.down):
            h = conv(h)
            if i < len(self.down) - 1:
                skips.append(h)
                if not self.dilated and i < len(self.down) - 2:
                    h = nn.functional.max_pool2d(h, 2, ceil_mode=True)
        for conv, skip in zip(self.up, reversed(skips)):
            if h.shape[-2:] != skip.shape[-2:]:
                h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = conv(torch.cat([h, skip], 1))
        return h + hx_in


class U2Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList(
            [
                RSU(7, 3, 32, 64),
                RSU(6, 64, 32, 128),
                RSU(5, 128, 64, 256),
                RSU(4, 256, 128, 512),
                RSU(4, 512, 256, 512, True),
                RSU(4, 512, 256, 512, True),
            ]
        )
        self.decoder = nn.ModuleList(
            [
                RSU(4, 1024, 256, 512, True),
                RSU(4, 1024, 128, 256),
                RSU(5, 512, 64, 128),
                RSU(6, 256, 32, 64),
                RSU(7, 128, 16, 64),
            ]
        )
        self.side = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in (64, 64, 128, 256, 512, 512)])
        self.out = nn.Conv2d(6, 1, 1)

    def forward(self, x):
        size, feats, h = x.shape[-2:], [], x
        for i, stage in enumerate(self.encoder):
            h = stage(h)
            feats.append(h)
            if i < len(self.encoder) - 1:
                h = nn.functional.max_pool2d(h, 2, ceil_mode=True)
        decoded = [feats[-1]]
        for stage, skip in zip(self.decoder, reversed(feats[:-1])):
            h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = stage(torch.cat([h, skip], 1))
            decoded.append(h)
        sides = [
            nn.functional.interpolate(conv(d), size=size, mode="bilinear", align_corners=False)
            for conv, d in zip(self.side, reversed(decoded))
        ]
        fused = self.out(torch.cat(sides, 1))
        return tuple(torch.sigmoid(s) for s in [fused, *sides])


# --- the WD14-class tagger ------------------------------------------------------------------------


class WD14Like(nn.Module):
    """A ViT-B/16 at 448 px taking WD14's input: N x H x W x 3, BGR, 0-255; sigmoid scores out."""

    def __init__(self):
        super().__init__()
        import timm

        self.vit = timm.create_model("vit_base_patch16_224", img_size=448, num_classes=TAGS, pretrained=False)

    def forward(self, x):
        rgb = x.flip(-1).permute(0, 3, 1, 2) / 127.5 - 1
        return torch.sigmoid(self.vit(rgb))


def build_models(folder: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    tagger = folder / "tagger"
    tagger.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            WD14Like().eval(),
            (torch.zeros(1, 448, 448, 3),),
            str(tagger / "model.onnx"),
            input_names=["input_1:0"],
            output_names=["predictions_sigmoid"],
            opset_version=17,
            dynamo=False,
        )
        u2net = folder / "u2net.onnx"
        torch.onnx.export(
            U2Net().eval(),
            (torch.zeros(1, 3, 320, 320),),
            str(u2net),
            input_names=["input.1"],
            opset_version=17,
            dynamo=False,
        )
    lines = ["tag_id,name,category,count"] + [f"{i},tag_{i},{9 if i < 4 else 0},100" for i in range(TAGS)]
    (tagger / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    return tagger, u2net


def make_workspace(folder: Path, photos: int) -> list[str]:
    """results/dataset/images/<id>.png (768 x 1024, smooth random colour fields) and a dedup.tsv keeping all."""
    images = folder / "results/dataset/images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids = [f"photo_{i:03d}" for i in range(photos)]
    for i in ids:
        small = rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)
        Image.fromarray(small).resize((768, 1024), Image.BICUBIC).save(images / f"{i}.png")
    rows = ["file\tid\tstatus"] + [f"{i}.jpg\t{i}\tkept" for i in ids]
    (folder / "results/dataset/dedup.tsv").write_text("\n".join(rows) + "\n")
    return ids


def run_jobs(scripts: Path, workspace: Path, ids: list[str], kind: str, settings: dict) -> float:
    """Every photo's `kind` job (mask or tag) as its own process, one after another: wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "CHARLORA_MASKS_DEVICE": "cpu", "CHARLORA_CAPTIONS_DEVICE": "cpu"}
    started = time.perf_counter()
    for i in ids:
        image = f"results/dataset/images/{i}.png"
        if kind == "mask":
            files = [image, f"out/masks/{i}.png", f"out/masks/{i}.json"]
            options = [f"--masks={json.dumps(settings)}", "--strict=false", "--user-mask"]
        else:
            files = [image, f"out/tags/{i}.json"]
            options = [f"--captions={json.dumps(settings)}"]
        cmd = [
            sys.executable,
            str(scripts / f"{kind}.py"),
            f"--id={i}",
            f"--log=logs/{kind}/{i}.log",
            *options,
            "--",
            *files,
        ]
        subprocess.run(cmd, cwd=workspace, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def per_photo_commit() -> str:
    """The last commit before model_pass.py: one model load per photo job."""
    added = subprocess.run(
        ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--", "scripts/charlora/model_pass.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{added[-1]}~1"


def load_seconds(load, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument(
        "--parent",
        default=None,
        help="the commit with one model load per photo job "
        "(default: the parent of the commit that added scripts/charlora/model_pass.py)",
    )
    parser.add_argument("--keep", type=Path, help="keep the models, workspaces and worktree here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="charlora-model-loads-"))
    root.mkdir(parents=True, exist_ok=True)
    tagger, u2net = build_models(root / "models")
    print(
        f"stand-ins: tagger {(tagger / 'model.onnx').stat().st_size / 1e6:.0f} MB, "
        f"U2-Net {u2net.stat().st_size / 1e6:.0f} MB",
        flush=True,
    )
    worktree = root / "parent"
    if not worktree.exists():
        parent = args.parent or per_photo_commit()
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), parent], check=True)
    mask_settings = {
        "method": "rembg",
        "rembg": {"model": str(u2net), "session": "u2net_custom"},
        "threshold": 0.5,
        "fill_holes": True,
        "dilate_px": 0,
        "feather_px": 1.0,
        "coverage_range": [0.0, 1.0],
    }
    tag_settings = {
        "tagger": "wd14",
        "wd14": {"folder": str(tagger), "general_threshold": 0.35, "character_threshold": 0.85},
    }
    loads = {
        "mask": load_seconds(lambda: masks.rembg_masker({**mask_settings, "device": "cpu"})),
        "tag": load_seconds(lambda: tags.make_tagger({**tag_settings, "device": "cpu"})),
    }
    results = {}
    for design, scripts in (("per photo (parent)", worktree / "scripts"), ("per batch (this)", REPO / "scripts")):
        workspace = root / design.split()[1]
        shutil.rmtree(workspace, ignore_errors=True)
        ids = make_workspace(workspace, args.photos)
        for kind, settings in (("mask", mask_settings), ("tag", tag_settings)):
            wall = run_jobs(scripts, workspace, ids, kind, settings)
            n_loads = args.photos if design.startswith("per photo") else 1
            results[design, kind] = (wall, n_loads * loads[kind])
            loading = n_loads * loads[kind]
            print(
                f"{design:20s} {kind:4s}: {args.photos} jobs in {wall:7.1f} s, {n_loads:3d} model loads "
                f"x {loads[kind]:.2f} s = {loading:6.1f} s: loading {100 * loading / wall:5.1f} %",
                flush=True,
            )
    for kind in ("mask", "tag"):
        (old_wall, old_load), (new_wall, new_load) = (
            results["per photo (parent)", kind],
            results["per batch (this)", kind],
        )
        print(
            f"{kind}: {old_wall / new_wall:.2f}x faster; loading {100 * old_load / old_wall:.1f} % "
            f"-> {100 * new_load / new_wall:.1f} % of the jobs' time",
            flush=True,
        )
    same = all(
        (root / "photo" / "out" / sub / f"{i}{ext}").read_bytes()
        == (root / "batch" / "out" / sub / f"{i}{ext}").read_bytes()
        for i in ids
        for sub, ext in (("masks", ".png"), ("masks", ".json"), ("tags", ".json"))
    )
    print(f"masks and tags byte-identical between the designs: {same}")
    if not args.keep:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
