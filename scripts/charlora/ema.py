"""An exponential moving average of the UNet's weights, in fp32 (train.ema_decay; off by default).

After every step: ema <- ema + (1 - decay) * (w - ema). Saved epochs then hold the average, which is
smoother than the last step's weights; the training itself goes on from the raw weights.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, weights: dict[str, torch.Tensor], decay: float):
        self.weights = weights
        self.decay = decay

    @classmethod
    def of(cls, unet, decay: float) -> "EMA":
        """An average that starts at the UNet's current weights."""
        return cls({n: p.detach().float().clone() for n, p in unet.named_parameters()}, decay)

    @torch.no_grad()
    def update(self, unet) -> None:
        for n, p in unet.named_parameters():
            self.weights[n].lerp_(p.float(), 1 - self.decay)

    def state_dict(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The averaged weights in the training's weight precision (what an epoch file holds)."""
        return {n: w.to(dtype) for n, w in self.weights.items()}

    def unet(self, like, dtype: torch.dtype):
        """A UNet of `like`'s config with the averaged weights, for validation."""
        from charlora.sdxl import unet_with

        return unet_with(self.state_dict(dtype), like.config)
