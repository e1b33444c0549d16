"""The training step's maths against the formulas people check it by (no model is loaded):
latent scaling with shift_factor, the velocity target, min-SNR-γ weights as diffusers'
train_text_to_image_lora computes them, noise offset, and SDXL's add_time_ids under flips."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

GAMMA = 5.0


def _models(prediction_type="epsilon", scaling=0.18215, shift=None, unet=None):
    from diffusers import DDPMScheduler

    from lorahub.training.setup import Models

    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
    )
    vae = SimpleNamespace(config=SimpleNamespace(scaling_factor=scaling, shift_factor=shift))
    return Models(pipe=None, unet=unet, vae=vae, text_encoders=[], tokenizers=[],
                  scheduler=scheduler, is_sdxl=False, weight_dtype=torch.float32,
                  device=torch.device("cpu"))  # fmt: skip


def _coeffs(m, timesteps):
    ac = m.scheduler.alphas_cumprod[timesteps].float()
    return ac.sqrt().view(-1, 1, 1, 1), (1 - ac).sqrt().view(-1, 1, 1, 1), ac / (1 - ac)


def test_latents_are_shifted_then_scaled():
    from lorahub.training.step import scale_latents

    z = torch.randn(2, 4, 8, 8)
    flux_like = _models(scaling=0.3611, shift=0.1159)
    torch.testing.assert_close(scale_latents(flux_like, z), (z - 0.1159) * 0.3611)
    torch.testing.assert_close(scale_latents(_models(scaling=0.18215), z), z * 0.18215)


def test_targets_per_prediction_type():
    from lorahub.training.step import target_for

    t = torch.tensor([0, 250, 999])
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    m = _models("v_prediction")
    a, s, _ = _coeffs(m, t)
    torch.testing.assert_close(target_for(m, x0, noise, t), a * noise - s * x0)
    assert target_for(_models("epsilon"), x0, noise, t) is noise
    assert target_for(_models("sample"), x0, noise, t) is x0


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_the_diffusers_example(kind):
    """train_text_to_image_lora: w = min(snr, γ) / snr (epsilon) or / (snr + 1) (v)."""
    from lorahub.training.step import snr_weights

    m = _models(kind)
    t = torch.tensor([0, 10, 100, 400, 700, 999])
    _, _, snr = _coeffs(m, t)
    w = torch.stack([snr, GAMMA * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    expected = w / snr if kind == "epsilon" else w / (snr + 1)
    torch.testing.assert_close(snr_weights(m, t, GAMMA), expected)
    assert expected[0] < 1 and expected[-1] == pytest.approx(
        1.0 if kind == "epsilon" else snr[-1] / (snr[-1] + 1)
    )


class ZeroUNet:
    """Predicts zeros and records what it was called with."""

    def __call__(self, noisy, timesteps, hidden, return_dict=False, **kw):
        self.noisy, self.timesteps = noisy, timesteps
        return (torch.zeros_like(noisy),)


def _loss(kind, *, gamma=None, offset=0.0, seed=0):
    from lorahub.training.config import TrainConfig
    from lorahub.training.step import Batch, training_loss

    unet = ZeroUNet()
    m = _models(kind, scaling=0.5, shift=0.25, unet=unet)
    cfg = TrainConfig(data="d", snr_gamma=gamma, noise_offset=offset)
    mean = torch.randn(8, 4, 16, 16, generator=torch.Generator().manual_seed(99))
    batch = Batch(mean=mean, std=torch.zeros_like(mean), hidden=torch.zeros(8, 77, 8))
    loss = training_loss(m, cfg, batch, torch.Generator().manual_seed(seed))
    latents = (mean - 0.25) * 0.5  # std 0: the sampled latents are the scaled means
    a, s, snr = _coeffs(m, unet.timesteps)
    noise = (unet.noisy - a * latents) / s  # what add_noise mixed in
    return loss, latents, noise, unet.timesteps, (a, s, snr)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_loss_is_the_snr_weighted_mse_to_the_right_target(kind):
    from lorahub.training.step import snr_weights

    loss, latents, noise, t, (a, s, _) = _loss(kind, gamma=GAMMA)
    target = noise if kind == "epsilon" else a * noise - s * latents
    per_sample = (target**2).mean(dim=(1, 2, 3))  # prediction is zero
    expected = (per_sample * snr_weights(_models(kind), t, GAMMA)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
    plain, *_ = _loss(kind)
    assert not torch.allclose(plain, loss), "min-SNR weighting changed nothing"


def test_noise_offset_shifts_each_channel_of_the_noise():
    _, _, noise, *_ = _loss("epsilon", offset=10.0)
    _, _, plain, *_ = _loss("epsilon")
    assert noise.mean(dim=(2, 3)).std() > 3.0  # one offset per (image, channel)
    assert plain.mean(dim=(2, 3)).std() < 0.3


def test_sdxl_time_ids_describe_the_crop_of_the_flipped_image(tmp_path):
    """[orig h, orig w, crop top, crop left, target h, target w], left measured in the flipped
    image: the pixels trained on are that crop of the resized, flipped image."""
    import numpy as np
    from PIL import Image

    from lorahub.training.data import DataSet, Example, Item, load_pixels, time_ids

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = DataSet(
        tmp_path, "captions", [Example("a.png", "x", (100, 60), path=tmp_path / "a.png")]
    )
    bucket = (64, 48)  # (w, h): the image is resized to 80×48, 16 px of slack across
    for flip in (False, True):
        item = Item(0, flip=flip, crop=(0.25, 0.0))
        ids = time_ids(data, item, bucket, center=False)
        assert ids[:2] == [60, 100] and ids[4:] == [48, 64]
        top, left = ids[2], ids[3]
        assert (top, left) == ((0, 12) if flip else (0, 4))
        img = (
            Image.open(tmp_path / "a.png").convert("RGB").resize((80, 48), Image.Resampling.BICUBIC)
        )
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = np.asarray(img.crop((left, top, left + 64, top + 48)), dtype=np.float32) / 127.5 - 1
        got = load_pixels(data, item, bucket, center=False).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, crop, atol=1e-6)


def test_caption_dropout_draws_empty_captions_at_its_rate():
    from lorahub.training.data import plan_epoch

    buckets = [(64, 64)] * 200

    def dropped(rate):
        plan = plan_epoch(buckets, list(range(200)), 4, 0, 0, flip=False, caption_dropout=rate)
        return sum(it.drop_caption for batch in plan for it in batch)

    assert dropped(0.0) == 0 and dropped(1.0) == 200 and 60 < dropped(0.5) < 140
