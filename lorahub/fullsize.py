"""Full-size architectures (configs only) for work where shapes, not weights, matter.

Benchmarks time lorahub on these with random weights, and tests check that adapters published
for the real models load into them; nothing here is downloaded.
"""

from __future__ import annotations

from typing import Any

# Stable Diffusion 1.5's UNet (runwayml/stable-diffusion-v1-5 unet/config.json).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}

# CLIP ViT-L/14's text model (SD 1.x's text encoder; SDXL's and Flux's first one).
CLIP_L_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}


def sd15_unet(*, empty: bool = False) -> Any:
    """An SD 1.5-shaped UNet with random weights (`empty`: uninitialised memory, instant)."""
    from diffusers import UNet2DConditionModel

    return _build(lambda: UNet2DConditionModel(**SD15_UNET), empty)


def clip_l_text_encoder(*, empty: bool = False) -> Any:
    """A CLIP-L-shaped text encoder with random weights (`empty`: uninitialised memory)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return _build(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)), empty)


def _build(make: Any, empty: bool) -> Any:
    import torch

    if not empty:
        return make().eval()
    with torch.device("meta"):
        model = make()
    return model.to_empty(device="cpu").eval()
