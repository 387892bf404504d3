#!/usr/bin/env python3
"""Writes lcm_guidance_embedding.json: the guidance-scale embedding that LCM pipelines feed to the UNet's
`timestep_cond` input, computed as diffusers does it, in torch float32.

diffusers (pipelines/latent_consistency_models/pipeline_latent_consistency_text2img.py, and the SDXL pipelines):
the pipeline builds w = torch.tensor(guidance_scale - 1) and calls get_guidance_scale_embedding(w, embedding_dim =
unet.config.time_cond_proj_dim), which multiplies w by 1000, takes half = dim // 2 frequencies
exp(-ln(10000) * k / (half - 1)) and concatenates [sin(w * f), cos(w * f)] (a zero pad when dim is odd).
The formula is restated here from that description; it needs only torch (Debian: python3-torch).

Run from this folder:  python3 make_lcm_embedding.py
"""
import json
import os

import torch

GUIDANCE_SCALES = [1.0, 1.5, 4.0, 8.5]
DIM = 256


def guidance_embedding(guidance_scale: float, dim: int) -> torch.Tensor:
    w = torch.tensor([guidance_scale - 1]) * 1000.0  # float32, as the pipeline's torch.tensor(g - 1)
    half = dim // 2
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    arguments = w.to(torch.float32)[:, None] * frequencies[None, :]
    emb = torch.cat([torch.sin(arguments), torch.cos(arguments)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb[0]


def main() -> None:
    cases = []
    for g in GUIDANCE_SCALES:
        emb = guidance_embedding(g, DIM)
        assert emb.dtype == torch.float32
        # float32 values written with 9 significant digits, which round-trip exactly.
        cases.append({"guidance_scale": g, "embedding": [float("%.9g" % v) for v in emb.tolist()]})
    out = {
        "source": "make_lcm_embedding.py (diffusers get_guidance_scale_embedding in torch float32)",
        "torch": torch.__version__,
        "dim": DIM,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lcm_guidance_embedding.json")
    with open(path, "w") as f:
        # One line per case keeps the file small and its diffs readable.
        f.write("{\n")
        for key in ("source", "torch", "dim"):
            f.write(f' "{key}": {json.dumps(out[key])},\n')
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(case) for case in cases))
        f.write("\n ]\n}\n")


if __name__ == "__main__":
    main()
