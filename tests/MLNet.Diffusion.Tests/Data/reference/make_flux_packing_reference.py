"""FLUX's latent packing and position ids, computed with the torch operations of diffusers' FluxPipeline
(_pack_latents: view(B, C, h/2, 2, w/2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (h/2)(w/2), 4C);
_unpack_latents, its inverse; _prepare_latent_image_ids: [(h/2)(w/2), 3] with (0, row, column)).
Run with Debian's python3-torch:

    /usr/bin/python3 make_flux_packing_reference.py

Writes flux_packing_reference.json beside this script.
"""
import json, os
import torch

b, c, h, w = 2, 3, 4, 6
latents = torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)
packed = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
unpacked = packed.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
assert torch.equal(unpacked, latents)
ids = torch.zeros(h // 2, w // 2, 3)
ids[..., 1] = ids[..., 1] + torch.arange(h // 2)[:, None]
ids[..., 2] = ids[..., 2] + torch.arange(w // 2)[None, :]
ids = ids.reshape((h // 2) * (w // 2), 3)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "flux_packing_reference.json"), "w") as f:
    json.dump({"batch": b, "channels": c, "height": h, "width": w, "packed": [int(v) for v in packed.flatten().tolist()],
               "image_ids": [int(v) for v in ids.flatten().tolist()]}, f)
