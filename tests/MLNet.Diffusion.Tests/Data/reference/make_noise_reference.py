#!/usr/bin/env python3
"""Writes noise_reference.json: values of torch.randn on the CPU generator and of numpy's legacy
RandomState.standard_normal, for the noise sources in src/MLNet.Diffusion/Noise.

torch (Debian: python3-torch): each case seeds a fresh torch.Generator("cpu").manual_seed(seed) and calls
torch.randn(shape, generator=g) as diffusers' randn_tensor does (one generator for the batch: one call for the whole
[B, 4, h, w] tensor; a list of generators: one [1, 4, h, w] call per image). torch fills float32 tensors of 16 or more
values in blocks of 16 with a vectorised Box-Muller whose log/sin/cos come from avx_mathfun.h on x86-64 CPUs with AVX2,
and from the C library elsewhere (ARM, builds without AVX2): the two differ in the last bits, so the torch cases are
written for both, by running this script again with ATEN_CPU_CAPABILITY=avx2 and =default.
numpy (Debian: python3-numpy): numpy.random.RandomState(seed).standard_normal(shape), float64.

Large tensors are summarised (first 32 values, last 16, float64 sum and sum of squares) to keep the file small.
Run from this folder:  python3 make_noise_reference.py
"""
import json
import os
import subprocess
import sys

SEEDS = [0, 1, 42, 2**32 + 5, -1]
NUMPY_SEEDS = [0, 1, 42, 2**32 - 1]


def summary(values):
    flat = [float(v) for v in values.reshape(-1).tolist()]
    import numpy as np
    as64 = np.asarray(flat, dtype=np.float64)
    return {"count": len(flat), "first": flat[:32], "last": flat[-16:],
            "sum": float(as64.sum()), "sum_of_squares": float((as64 * as64).sum())}


def torch_cases():
    import torch

    def gen(seed):
        return torch.Generator("cpu").manual_seed(seed)

    cases = []
    for seed in SEEDS:
        g = gen(seed)
        first = torch.randn(5, generator=g)
        second = torch.randn(5, generator=g)  # the scalar path's cached second value carries over
        cases.append({"seed": seed, "calls": [[5], [5]], "values": [first.tolist(), second.tolist()]})
        g = gen(seed)
        cases.append({"seed": seed, "calls": [[20]], "values": [torch.randn(20, generator=g).tolist()]})
        for shape in ([1, 4, 64, 64], [1, 4, 128, 128], [2, 4, 48, 80], [1, 4, 9, 9]):
            g = gen(seed)
            cases.append({"seed": seed, "calls": [shape], "summaries": [summary(torch.randn(shape, generator=g))]})
        g = gen(seed)  # two calls on one generator: the second starts where the first left the generator
        a = torch.randn([1, 4, 64, 64], generator=g)
        b = torch.randn([1, 4, 64, 64], generator=g)
        cases.append({"seed": seed, "calls": [[1, 4, 64, 64], [1, 4, 64, 64]], "summaries": [summary(a), summary(b)]})
    # diffusers' list of generators: one [1, 4, h, w] call per image, each on its own generator
    per_image = {"seeds": [42, 43], "shape": [1, 4, 48, 80]}
    per_image["summaries"] = [summary(torch.randn(per_image["shape"], generator=gen(s))) for s in per_image["seeds"]]
    return {"cases": cases, "per_image": per_image}


def numpy_cases():
    import numpy as np
    cases = []
    for seed in NUMPY_SEEDS:
        rs = np.random.RandomState(seed)
        cases.append({"seed": seed, "calls": [[5]], "values": [rs.standard_normal(5).tolist()]})
        rs = np.random.RandomState(seed)
        cases.append({"seed": seed, "calls": [[1, 4, 64, 64]], "summaries": [summary(rs.standard_normal((1, 4, 64, 64)))]})
    return cases


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--torch":
        json.dump(torch_cases(), sys.stdout)
        return
    import numpy
    import torch
    out = {"torch_version": torch.__version__, "numpy_version": numpy.__version__}
    for name, capability in (("torch_avx2", "avx2"), ("torch_default", "default")):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
        text = subprocess.run([sys.executable, __file__, "--torch"], env=env, check=True, capture_output=True, text=True).stdout
        out[name] = json.loads(text)
    out["numpy"] = numpy_cases()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "noise_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
