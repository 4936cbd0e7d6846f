"""Extract a LoRA from a fine-tuned epoch: the product file, in kohya's format.

The fine-tune changed every UNet weight W by delta = W_tuned - W_base. A LoRA stores, for chosen
layers, the best rank-r approximation of that delta as two small matrices:

    delta ≈ up @ down          up: (out, r)    down: (r, in)      (convs: in = in_channels * kh * kw)

which a loader adds back as W_base + (alpha / r) * up @ down. With the SVD delta = U S Vh, the best
rank-r approximation (Eckart-Young) is U[:, :r] S[:r] Vh[:r]; kohya folds the singular values into
`up` (up = U S, down = Vh) and writes alpha = r, so the scale is 1. We do the same, so a LoRA from us
and one from kohya's `extract_lora_from_models.py` hold the same numbers.

Which layers (kohya's rule for SDXL, so that every loader knows the names):
- inside each transformer (diffusers `*.attentions.N`): every Linear (proj_in/out, q, k, v, out,
  feed-forward), rank `rank`;
- with `conv_rank` > 0, also inside ResNet blocks, downsamplers and upsamplers: 3x3 convs at rank
  `conv_rank`, the Linear `time_emb_proj` and the 1x1 `conv_shortcut` at rank `rank`.
Full-size SDXL: 722 modules without conv rank, 788 with (739 Linear, 38 3x3 convs, 11 1x1 convs).
A layer narrower than the rank gets its own full rank, and alpha says so.

How the factorisation is computed: kohya calls `torch.linalg.svd(delta)`, which for a 10240x1280
feed-forward weight also builds a 10240x10240 U that is thrown away. We need only the top r
directions, so we use a randomized block Krylov SVD (Musco & Musco 2015, on the randomized SVD of
Halko, Martinsson, Tropp 2011). Multiply delta by r + 8 random vectors and orthonormalise: a first
block of output directions. Each further block is delta delta^T applied to the last one, made
orthogonal to all earlier blocks. The blocks together span the Krylov space, and the best rank-r
approximation of delta within it comes from the exact SVD of delta^T times that basis, a thin
matrix. The plain randomized SVD keeps only the last block (power iterations); keeping them all
needs about half as many blocks on the flat spectra that fine-tune deltas have. We add blocks
until the energy captured by the top r directions grows by less than 2 % of the remaining error²
in a block. Measured on full-size SDXL (benchmarks/lora_extract.py): 2-4 blocks, well within 1 % of
the best rank-r error on flat and decaying spectra, many times faster than kohya's call. Small
layers take the exact (thin) SVD: where the smaller side is at most 4 blocks wide (4 (r + 8)), the
Krylov space would span about the whole matrix, and the exact SVD is as fast or faster (64x64 at
rank 8: 0.7 ms against 2.3 ms; 320x320 at rank 64: 13 ms against 28 ms).

Clamping (kohya's, `clamp_quantile`): the values of up and down together are clamped to ±(their
`clamp_quantile` quantile), which removes rare outliers; 1.0 means no clamping (kohya clamps even
then, at ±max, which clips the most negative values: we do not).

`min_diff`: a layer is written only if its largest absolute weight change exceeds `min_diff`; layers
the fine-tune left (almost) untouched carry no information and are left out. (kohya uses its
min_diff only to decide whether the text encoders changed; ours are frozen, so the file never has
text-encoder keys.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from charlora import ldm_layout, sdxl
from charlora.atomic import atomic_path
from charlora.config import pickle_refusal
from charlora.hashing import file_sha256

log = logging.getLogger("charlora.lora")

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
OVERSAMPLE = 8  # extra random directions of the randomized SVD
MAX_BLOCKS = 12  # of the Krylov space
EXACT_WITHIN = 4  # blocks: a layer whose smaller side is at most this many blocks wide takes the exact SVD
CONVERGED = 2e-2  # stop when a block adds less than this share of the remaining error² to the captured energy
TRANSFORMER = ".attentions."
CONV_BLOCKS = (".resnets.", ".downsamplers.", ".upsamplers.")


class LoraError(Exception):
    """Input that cannot make a LoRA; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Settings:
    """config `lora:` (defaults and meanings in config/schema.yaml)."""

    rank: int
    conv_rank: int
    clamp_quantile: float
    min_diff: float
    save_precision: str
    device: str

    @classmethod
    def from_config(cls, section: dict) -> "Settings":
        return cls(**{k: section[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Target:
    """One layer the LoRA covers."""

    module: str  # diffusers name of the layer, e.g. down_blocks.1.attentions.0.proj_in
    lora_name: str  # kohya's name: lora_unet_input_blocks_4_1_proj_in
    shape: tuple[int, ...]  # of its weight
    rank: int  # min(asked rank, out, in * kh * kw)

    @property
    def kind(self) -> str:
        return "linear" if len(self.shape) == 2 else "conv1x1" if self.shape[2:] == (1, 1) else "conv3x3"


def lora_name(module: str, unet_config: dict) -> str:
    """kohya's name of a UNet layer: its LDM (original SDXL) module path, dots as underscores."""
    return "lora_unet_" + ldm_layout.unet_key(module + ".weight", unet_config).removesuffix(".weight").replace(".", "_")


def targets(shapes: dict[str, tuple[int, ...]], unet_config: dict, rank: int, conv_rank: int) -> list[Target]:
    """The layers kohya's LoRA covers in an SDXL UNet, from its weights' names and shapes (diffusers)."""
    found = []
    for key, shape in shapes.items():
        if not key.endswith(".weight") or len(shape) < 2:  # norms and biases are not adapted
            continue
        module = key.removesuffix(".weight")
        in_transformer, in_conv_block = TRANSFORMER in module, any(b in module for b in CONV_BLOCKS)
        if not in_transformer and not (in_conv_block and conv_rank):
            continue
        asked = conv_rank if len(shape) == 4 and shape[2:] != (1, 1) else rank
        found.append(Target(module, lora_name(module, unet_config), shape, min(asked, shape[0], math.prod(shape[1:]))))
    return sorted(found, key=lambda t: t.lora_name)


def as_trained(base: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A base weight as training started from it, in fp32: cast to the training's weight precision
    (`dtype`, the epoch file's). Comparing a bf16 epoch with the fp16 or fp32 base file would count
    that rounding (up to 0.4 % of each weight, more than a fine-tune's change at lr 4e-6) as learnt."""
    return base.float().to(dtype).float()


def weight_change(base: torch.Tensor, tuned: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """What training changed, in fp32: the tuned weight minus the base weight as training held it."""
    return tuned.float() - as_trained(base.reshape(shape), tuned.dtype)


def layer_generator(module: str) -> torch.Generator:
    """The random directions of a layer's randomized SVD, seeded by its name: the same file on a rebuild."""
    return torch.Generator().manual_seed(int(hashlib.sha256(module.encode()).hexdigest()[:15], 16))


def orthonormal(Y: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the columns of a tall Y: Cholesky QR, twice (Y^T Y = L L^T, Q = Y L^-T; the
    second pass restores the orthogonality the first loses), several times faster than Householder QR
    on these shapes. Householder QR where Y is too close to rank-deficient for Cholesky."""
    Q = Y
    for _ in range(2):
        L, info = torch.linalg.cholesky_ex(Q.T @ Q)
        if info:
            return torch.linalg.qr(Y).Q
        Q = torch.linalg.solve_triangular(L, Q.T, upper=False).T
    return Q


def new_directions(block: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning what `block` adds to the orthonormal columns of `basis`. Project
    the basis out, then orthonormalise through the Gram matrix (block^T block = V L V^T, block V L^-1/2,
    in float64), twice, since one pass leaves rounding. Directions below 1e-5 of the block's largest
    are rounding, not information (delta's range is already in the basis there): they are dropped, so
    the result may have fewer columns, or none."""
    floor = 1e-10 * block.square().sum(dim=0).max().item()
    for _ in range(2):
        block = block - basis @ (basis.T @ block)
        values, vectors = torch.linalg.eigh((block.T.double() @ block.double()))
        keep = values > floor
        block = block @ (vectors[:, keep] / values[keep].sqrt()).to(block.dtype)
        floor = 1e-10
    return block


def low_rank(delta: torch.Tensor, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Best rank-`rank` factors of a 2-D `delta` as kohya folds them: (up = U S, down = Vh), and the
    number of Krylov blocks used (0: exact SVD)."""
    m, n = delta.shape
    q = rank + OVERSAMPLE
    if min(m, n) <= EXACT_WITHIN * q:
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
        return U[:, :rank] * S[:rank], Vh[:rank], 0
    total = delta.square().sum().item()
    omega = torch.randn(n, q, generator=generator).to(delta.device)
    basis = orthonormal(delta @ omega)  # (m, q): a first guess at delta's main output directions
    projected = delta.T @ basis  # (n, q): delta^T basis, so delta ≈ basis projected^T
    gram = projected.T @ projected  # grown with the space, not recomputed
    newest, captured = q, None  # newest: the width of the last block
    for blocks in range(1, MAX_BLOCKS + 1):
        energy = torch.linalg.eigvalsh(gram)[-rank:].sum().item()  # ||best rank-r approximation in the space||²
        if captured is not None and energy - captured <= CONVERGED * (total - energy):  # (total - energy: error²)
            break
        if basis.shape[1] + q > min(m, n):  # the space cannot grow much further
            break
        block = new_directions(delta @ orthonormal(projected[:, -newest:]), basis)  # delta delta^T (last block)
        if block.shape[1] == 0:  # the space holds all of delta's range
            break
        basis = torch.cat([basis, block], dim=1)
        newest, captured = block.shape[1], energy
        projected = torch.cat([projected, delta.T @ block], dim=1)
        side = projected.T @ projected[:, -newest:]  # the Gram matrix's new columns
        gram = torch.cat([torch.cat([gram, side[:-newest]], dim=1), side.T], dim=0)
    # The SVD of projected = U S Vh through its Gram matrix: gram = Vh^T S² Vh, so U = projected Vh^T / S.
    # Then delta ≈ basis projected^T = (basis Vh^T S) U^T: up = basis Vh^T S, down = U^T.
    squares, vectors = torch.linalg.eigh(gram.double())
    S, V = squares[-rank:].flip(0).clamp(min=0).sqrt(), vectors[:, -rank:].flip(1)  # top r, largest first
    up = basis @ (V * S).to(basis.dtype)
    down = (projected @ (V / S.clamp(min=1e-30)).to(basis.dtype)).T
    return up, down, blocks


def quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(values, q) (linear interpolation, the same arithmetic) without its 16M-value limit."""
    flat = values.flatten()
    rank = torch.scalar_tensor(q, dtype=flat.dtype) * (flat.numel() - 1)  # as torch computes it
    below = int(rank.long())
    low = flat.kthvalue(below + 1).values
    high = flat.kthvalue(int(rank.ceil().long()) + 1).values
    return torch.lerp(low, high, (rank - below).to(flat.device))


def clamp(up: torch.Tensor, down: torch.Tensor, clamp_quantile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """kohya's outlier clamp: up and down to ±(the `clamp_quantile` quantile of their values together)."""
    if clamp_quantile >= 1:
        return up, down
    limit = quantile(torch.cat([up.flatten(), down.flatten()]), clamp_quantile)
    return up.clamp(-limit, limit), down.clamp(-limit, limit)


def to_dtype(up: torch.Tensor, down: torch.Tensor, dtype: torch.dtype, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast both factors; where `up` (which carries the singular values) would overflow, move a power of
    two from up to down first (exact: the product stays the same)."""
    largest = torch.finfo(dtype).max / 2
    up_max, down_max = up.abs().max().item(), down.abs().max().item()
    if up_max > largest:
        shift = 2.0 ** math.ceil(math.log2(up_max / largest))
        up, down = up / shift, down * shift
        log.info("%s: largest up value %.3g exceeds %s, a factor %g moved to down", name, up_max, dtype, shift)
    up, down = up.to(dtype), down.to(dtype)
    if not (torch.isfinite(up).all() and torch.isfinite(down).all()):
        raise LoraError(
            f"{name}: the change is too large for lora.save_precision ({dtype}; largest values "
            f"{up_max:.3g} and {down_max:.3g}); use save_precision: fp32"
        )
    return up, down


@dataclass
class Extracted:
    """What extraction wrote, for the log and the verification."""

    layers: int = 0  # in the file
    skipped: list[str] = field(default_factory=list)  # kohya names of layers left out by min_diff
    narrower: int = 0  # layers whose rank is their own width, below the asked rank
    krylov_blocks: list[int] = field(default_factory=list)  # per layer written; 0 = exact SVD


def open_weights(path: Path, config: dict, what: str) -> sdxl.UNetWeights:
    if refusal := pickle_refusal(path):
        raise LoraError(f"{what} {path} {refusal}")
    try:
        return sdxl.UNetWeights(path, config)
    except Exception as exc:  # safetensors raises its own error types for unreadable headers
        raise LoraError(f"{what} {path}: not a readable .safetensors file or diffusers folder ({exc})") from None


def check_pair(base: sdxl.UNetWeights, tuned: sdxl.UNetWeights, expected: dict, base_hash: str | None) -> None:
    """The epoch must be the base model's architecture and (when it says) trained from that base model."""
    for weights, what in ((base, "base model"), (tuned, "epoch file")):
        if problem := weights.mismatch(expected):
            raise LoraError(
                f"{what} {weights.path} is not the SDXL UNet of the base model's config "
                f"({sdxl.config_dir(base.path)}): {problem}"
            )
    trained_from = tuned.metadata().get("charlora.base_model_sha256")
    if base_hash and trained_from and trained_from != base_hash:
        raise LoraError(
            f"epoch file {tuned.path} was trained from another base model (sha256 {trained_from[:12]}…) "
            f"than base_model {base.path} (sha256 {base_hash[:12]}…); a LoRA of this pair would encode "
            "the difference between two base models. Set base_model to the one the run trained from"
        )


def extract(
    base_model: Path,
    epoch_file: Path,
    settings: Settings,
    out: Path,
    metadata: dict[str, str],
    base_hash: str | None = None,
    progress: bool = True,
) -> Extracted:
    """Write the LoRA of `epoch_file` against `base_model` to `out` (kohya format, `metadata` added)."""
    from tqdm import tqdm

    base_model, epoch_file, out = Path(base_model), Path(epoch_file), Path(out)
    check_writable(out)
    config = sdxl.unet_config(base_model)
    expected = sdxl.unet_shapes(config)
    base = open_weights(base_model, config, "base model")
    tuned = open_weights(epoch_file, config, "epoch file")
    check_pair(base, tuned, expected, base_hash)
    device, dtype = sdxl.pick_device(settings.device), SAVE_DTYPES[settings.save_precision]
    layers = targets(expected, config, settings.rank, settings.conv_rank)
    result = Extracted()
    state = {}
    for target in tqdm(layers, desc="extracting", unit="layer", disable=not progress, mininterval=1.0):
        name = target.module + ".weight"
        delta = weight_change(base.get(name).to(device), tuned.get(name).to(device), target.shape)
        if not torch.isfinite(delta).all():
            raise LoraError(f"epoch file {epoch_file}: {name} holds inf or NaN values")
        if delta.abs().max().item() <= settings.min_diff:
            result.skipped.append(target.lora_name)
            continue
        up, down, blocks = low_rank(delta.flatten(1), target.rank, layer_generator(target.module))
        up, down = clamp(up, down, settings.clamp_quantile)
        up, down = to_dtype(up, down, dtype, target.lora_name)
        if len(target.shape) == 4:  # a conv: down is an (r, in, kh, kw) conv, up a 1x1 conv
            up, down = up.reshape(*up.shape, 1, 1), down.reshape(target.rank, *target.shape[1:])
        state[f"{target.lora_name}.lora_up.weight"] = up.cpu().contiguous()
        state[f"{target.lora_name}.lora_down.weight"] = down.cpu().contiguous()
        state[f"{target.lora_name}.alpha"] = torch.tensor(float(target.rank), dtype=dtype)
        result.layers += 1
        result.narrower += target.rank < (settings.conv_rank if target.kind == "conv3x3" else settings.rank)
        result.krylov_blocks.append(blocks)
    if not state:
        raise LoraError(
            f"epoch file {epoch_file}: no UNet layer changed by more than lora.min_diff "
            f"({settings.min_diff:g}) from {base_model}; is it an epoch of this base model's run? "
            "(lower lora.min_diff to keep smaller changes)"
        )
    save(state, out, metadata)
    return result


def check_writable(out: Path) -> None:
    """Fail before the work, not after it, when the output cannot be written."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoraError(f"cannot write {out}: {exc.strerror or exc} ({exc.filename})") from None
    if not os.access(out.parent, os.W_OK):
        raise LoraError(f"cannot write {out}: its folder is not writable")


def kohya_hashes(path: Path) -> tuple[str, str]:
    """The hashes kohya stores (sshs_model_hash, sshs_legacy_hash), as sd-webui-additional-networks
    computes them: SHA-256 of the tensor data (the bytes after the header), and the first 8 hex digits
    of the SHA-256 of the 64 KiB at offset 1 MiB of a file whose metadata holds only the ss_* keys."""
    with open(path, "rb") as f:
        data = hashlib.sha256()
        f.seek(8 + int.from_bytes(f.read(8), "little"))
        for chunk in iter(lambda: f.read(1 << 20), b""):
            data.update(chunk)
        f.seek(0x100000)
        legacy = hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
    return data.hexdigest(), legacy


def save(state: dict[str, torch.Tensor], out: Path, metadata: dict[str, str]) -> None:
    """Write the LoRA with `metadata` and kohya's hashes, atomically, metadata in sorted key order."""
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=ss_only)  # first as kohya hashes it: ss_* metadata only
        sdxl.write_metadata(tmp, ss_only)
        model_hash, legacy_hash = kohya_hashes(tmp)
        sdxl.write_metadata(tmp, metadata | {"sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash})


def kohya_metadata(
    *,
    settings: Settings,
    run: str,
    epoch: int,
    token: str,
    resolution: int,
    base_name: str,
    base_hash: str,
    rights_holder: str | None = None,
    consent: Path | None = None,
) -> dict[str, str]:
    """kohya's ss_* keys and the modelspec.* keys that A1111/Forge, ComfyUI managers and model hubs read,
    and charlora's: the epoch, the base model's hash, the rights holder and the consent record's hash
    (subject.rights_holder, subject.consent), each where it is set. No date: a rebuild gives the same bytes."""
    args = (
        {"conv_dim": str(settings.conv_rank), "conv_alpha": str(float(settings.conv_rank))}
        if settings.conv_rank
        else {}
    )
    return (
        {
            "ss_v2": "False",
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(settings.rank),
            "ss_network_alpha": str(float(settings.rank)),
            "ss_network_args": json.dumps(args),
            "ss_output_name": run,
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
            "modelspec.title": run,
            "modelspec.resolution": f"{resolution}x{resolution}",
            "modelspec.prediction_type": "epsilon",
            "modelspec.trigger_phrase": token,
            "modelspec.description": (
                f"Character LoRA of '{token}', extracted by charlora from epoch {epoch} of run "
                f"'{run}' (full-UNet fine-tune of {base_name}, sha256 {base_hash}); rank "
                f"{settings.rank}, conv rank {settings.conv_rank}, clamp quantile "
                f"{settings.clamp_quantile:g}, min diff {settings.min_diff:g}."
            ),
            "charlora.epoch": str(epoch),
            "charlora.base_model_sha256": base_hash,
        }
        | ({"charlora.rights_holder": rights_holder} if rights_holder else {})
        | ({"charlora.consent_sha256": file_sha256(consent)} if consent else {})
    )
