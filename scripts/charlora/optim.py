"""Optimizers for the full-UNet fine-tune: Adafactor (written out, with stochastic rounding), AdamW8bit.

Adafactor keeps, per weight matrix, a running mean of squared gradients factored into a row and a
column vector (Shazeer & Stern 2018), so its state is tiny next to Adam's two full-size moments.
`adafactor_step` is the update of transformers' Adafactor with a fixed learning rate (relative_step,
scale_parameter and warmup_init off, no first moment), the settings OneTrainer and kohya use for SDXL
fine-tunes; the tests check it against transformers' class.

Weights in bf16 lose small updates: 4e-6 times a unit-scale update is below half a bf16 step for any
weight above ~0.002, so rounding to nearest would leave the weight unchanged. With stochastic
rounding the new value rounds up or down with probabilities that make the expected result exact,
so the updates accumulate on average (`copy_stochastic_`).

Fused backward (`FusedBackward`): each parameter's Adafactor step runs from a hook as soon as its
gradient is accumulated, and the gradient is freed right away, so the gradients of the whole UNet
never exist at once (5 GB for SDXL in bf16).
"""

from __future__ import annotations

import math

import torch


def copy_stochastic_(target: torch.Tensor, source: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """target (bf16) <- source (fp32), rounded up or down at random in proportion to the distance."""
    # bf16 is fp32 with the low 16 bits cut off: add random low bits, then cut.
    noise = torch.randint(0, 1 << 16, source.shape, dtype=torch.int32, device=source.device, generator=generator)
    bits = source.view(torch.int32) + noise
    bits &= -65536  # 0xFFFF0000
    target.copy_(bits.view(torch.float32))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm(2) / math.sqrt(x.numel())


@torch.no_grad()
def adafactor_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: dict,
    lr: float,
    *,
    decay_rate: float = -0.8,
    eps: float = 1e-30,
    clip_threshold: float = 1.0,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
) -> None:
    """One Adafactor update of `param` in place; `state` holds the factored second moment and the step."""
    grad = grad.float()
    weight = param.float()
    factored = grad.ndim >= 2
    if not state:
        state["step"] = 0
        if factored:
            state["exp_avg_sq_row"] = torch.zeros(grad.shape[:-1], device=grad.device)
            state["exp_avg_sq_col"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:], device=grad.device)
        else:
            state["exp_avg_sq"] = torch.zeros_like(grad)
    state["step"] += 1
    beta2 = 1.0 - state["step"] ** decay_rate  # rises towards 1: a longer memory as training goes on
    squared = grad * grad + eps
    if factored:
        row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
        row.mul_(beta2).add_(squared.mean(dim=-1), alpha=1.0 - beta2)
        col.mul_(beta2).add_(squared.mean(dim=-2), alpha=1.0 - beta2)
        # rank-1 estimate of 1/sqrt(v): row and column factors, normalised by the row mean
        r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)
        c_factor = col.unsqueeze(-2).rsqrt()
        update = (r_factor * c_factor) * grad
    else:
        v = state["exp_avg_sq"]
        v.mul_(beta2).add_(squared, alpha=1.0 - beta2)
        update = grad * v.rsqrt()
    update /= (_rms(update) / clip_threshold).clamp(min=1.0)  # update clipping instead of gradient clipping
    if weight_decay:
        weight.mul_(1.0 - weight_decay * lr)
    weight.sub_(update * lr)
    if param.dtype == torch.bfloat16:
        copy_stochastic_(param, weight, generator)
    elif param.dtype != torch.float32:
        param.copy_(weight)
    # fp32: `weight` was param.float(), i.e. param itself, already updated in place


class Adafactor(torch.optim.Optimizer):
    """torch.optim wrapper of `adafactor_step` (state_dict, param groups, lr as a group setting)."""

    def __init__(
        self,
        params,
        lr: float,
        decay_rate: float = -0.8,
        eps: float = 1e-30,
        clip_threshold: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(
            params,
            dict(lr=lr, decay_rate=decay_rate, eps=eps, clip_threshold=clip_threshold, weight_decay=weight_decay),
        )
        # Stochastic rounding draws from a generator seeded per (step, parameter), so the result does
        # not depend on the order parameters are stepped in (fused or not). Set step_seed each step.
        self.step_seed = seed
        self.index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.step_param(p, group)
        return None

    def step_param(self, p: torch.Tensor, group: dict | None = None) -> None:
        group = group or self.param_groups[0]
        generator = None
        if p.dtype == torch.bfloat16:
            generator = torch.Generator(device=p.device).manual_seed((self.step_seed + self.index[p]) % 2**63)
        adafactor_step(
            p,
            p.grad,
            self.state[p],
            group["lr"],
            decay_rate=group["decay_rate"],
            eps=group["eps"],
            clip_threshold=group["clip_threshold"],
            weight_decay=group["weight_decay"],
            generator=generator,
        )


class FusedBackward:
    """Run each parameter's optimizer step from a hook as its gradient is ready, then free the gradient.

    Use: `fused = FusedBackward(optimizer)`, then `loss.backward()` alone updates the weights. The step
    order follows the backward pass, which is deterministic, so fused and unfused give the same weights.
    Accumulating gradients over several backward passes: `armed = False` for all but the last, whose
    hooks then step on the summed gradients (which, until then, exist whole: no memory saved).
    """

    def __init__(self, optimizer: Adafactor):
        self.optimizer = optimizer
        self.armed = True
        self.handles = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                self.handles.append(p.register_post_accumulate_grad_hook(self._make_hook(group)))

    def _make_hook(self, group: dict):
        def hook(p: torch.Tensor) -> None:
            if self.armed:
                self.optimizer.step_param(p, group)
                p.grad = None

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def make_optimizer(name: str, params, lr: float, seed: int = 0) -> torch.optim.Optimizer:
    """'adafactor', 'adamw8bit' (bitsandbytes) or 'adamw' (torch, fp32 moments)."""
    params = list(params)
    if name == "adafactor":
        return Adafactor(params, lr=lr, seed=seed)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=0.01)
        except Exception as exc:  # ImportError, or a build without kernels for this machine
            raise RuntimeError(
                f"train.optimizer: adamw8bit needs bitsandbytes, which cannot run here ({exc}); "
                "install bitsandbytes for this machine or use train.optimizer: adafactor"
            ) from exc
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}")
