"""The diffusion maths, in one place: the training step, the validation loss and the memory benchmark
all call these functions.

SDXL predicts the noise (epsilon) on the DDPM schedule of 1000 timesteps, ᾱ_t = alphas_cumprod[t]:

    x_t   = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε                                    add_noise
    loss  = mean over pixels of w (ε̂ - ε)², divided by mean(w)                masked_mse
            w = 1 on the subject, `unmasked_weight` elsewhere (masked training), else 1
    Min-SNR-γ: loss × min(SNR_t, γ) / SNR_t,  SNR_t = ᾱ_t / (1 - ᾱ_t)          min_snr_weight
    offset noise: ε + offset · N(0, 1) per image and channel                  draw_noise

`settings` below is a train.Settings (the fields named are read).
"""

from __future__ import annotations

import torch


def draw_noise(shape: tuple[int, ...], generator: torch.Generator, offset: float) -> torch.Tensor:
    """ε, with the noise offset (a random shift of each image's channel means) when it is on: it lets
    the model learn images darker or brighter than average."""
    noise = torch.randn(shape, generator=generator)
    if offset:
        noise += offset * torch.randn(shape[:2] + (1, 1), generator=generator)
    return noise


def add_noise(
    latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    a = alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(latents.device)
    return a.sqrt() * latents + (1 - a).sqrt() * noise


def predict_noise(unet, noisy, timesteps, prompt, pooled, time_ids, autocast_dtype) -> torch.Tensor:
    """ε̂ = unet(x_t, t, text, size conditioning), in the UNet's dtype under autocast when it is set."""
    dtype = next(unet.parameters()).dtype  # (the UNet's own dtype; its DDP wrapper has no .dtype)
    with torch.autocast(noisy.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        return unet(
            noisy.to(dtype),
            timesteps.to(noisy.device),
            prompt.to(dtype),
            added_cond_kwargs={"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(dtype)},
            return_dict=False,
        )[0]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, settings) -> torch.Tensor:
    """Per-sample loss: squared error weighted 1 on the subject, `unmasked_weight` elsewhere."""
    weight = mask.clamp(min=settings.unmasked_weight, max=1.0) if settings.masked_training else torch.ones_like(mask)
    se = (pred.float() - target.float()) ** 2 * weight
    loss = se.mean(dim=(1, 2, 3))
    if settings.normalize_masked_area_loss and settings.masked_training:
        loss = loss / weight.mean(dim=(1, 2, 3))
    return loss


def min_snr_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weighting for epsilon prediction: min(SNR, γ) / SNR (low-noise timesteps count less)."""
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return snr.clamp(max=gamma) / snr


def training_loss(pred, noise, mask, timesteps, alphas_cumprod, settings) -> torch.Tensor:
    """The loss of each image of a training batch."""
    loss = masked_mse(pred, noise, mask, settings)
    if settings.min_snr_gamma:
        loss = loss * min_snr_weight(timesteps, alphas_cumprod, settings.min_snr_gamma).to(loss.device)
    return loss


def val_timesteps(count: int, num_train_timesteps: int = 1000) -> list[int]:
    """`count` timesteps at the centres of equal slices of the schedule (e.g. 62, 187, ..., 937 for 8)."""
    return [int((k + 0.5) * num_train_timesteps / count) for k in range(count)]
