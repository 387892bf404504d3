"""Reference schedules for FlowMatchEulerDiscreteScheduler (and FlowMatchHeunDiscreteScheduler, below), computed with the operations and dtypes of diffusers'
scheduling_flow_match_euler_discrete.py (__init__, set_timesteps, time_shift, stretch_shift_to_terminal, step,
scale_noise) and of the SD3/FLUX pipelines (calculate_shift; FLUX passes sigmas = linspace(1, 1/n, n)).
diffusers itself is not installed here, so this script restates those lines with torch and numpy, keeping each
float32/float64 boundary where diffusers has it. Run with Debian's python3-torch and python3-numpy:

    /usr/bin/python3 make_flow_match_reference.py

Writes flow_match_reference.json beside this script.
"""
import json, math, os
import numpy as np
import torch

def init_sigmas(n_train, shift, dynamic):
    timesteps = np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy()
    timesteps = torch.from_numpy(timesteps).to(dtype=torch.float32)
    sigmas = timesteps / n_train
    if not dynamic:
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas[-1].item(), sigmas[0].item()          # sigma_min, sigma_max

def time_shift(mu, sigma, t, linear):
    if linear:
        return mu / (mu + (1 / t - 1) ** sigma)
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)

def stretch(t, terminal):
    one_minus_z = 1 - t
    scale_factor = one_minus_z[-1] / (1 - terminal)
    return 1 - (one_minus_z / scale_factor)

def set_timesteps(cfg, steps, sigmas=None, mu=None):
    n_train, shift = cfg.get("num_train_timesteps", 1000), cfg.get("shift", 1.0)
    dynamic, linear = cfg.get("use_dynamic_shifting", False), cfg.get("time_shift_type", "exponential") == "linear"
    sigma_min, sigma_max = init_sigmas(n_train, shift, dynamic)
    if sigmas is None:
        timesteps = np.linspace(sigma_max * n_train, sigma_min * n_train, steps)
        sigmas = timesteps / n_train
    else:
        sigmas = np.array(sigmas).astype(np.float32)
    if dynamic:
        sigmas = time_shift(mu, 1.0, sigmas, linear)
    else:
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    if cfg.get("shift_terminal"):
        sigmas = stretch(sigmas, cfg["shift_terminal"])
    sigmas = torch.from_numpy(np.asarray(sigmas)).to(dtype=torch.float32)
    timesteps = sigmas * n_train
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    return sigmas, timesteps

def calculate_shift(tokens, base_len=256, max_len=4096, base_shift=0.5, max_shift=1.15):
    m = (max_shift - base_shift) / (max_len - base_len)
    b = base_shift - m * base_len
    return tokens * m + b

def floats(t):
    return [float(v) for v in t.tolist()]

cases = []
def add(name, cfg, steps, flux=False, tokens=None):
    mu = calculate_shift(tokens) if tokens is not None else None
    sig = np.linspace(1.0, 1 / steps, steps) if flux else None
    sigmas, timesteps = set_timesteps(cfg, steps, sigmas=sig, mu=mu)
    cases.append({"name": name, "config": cfg, "steps": steps, "pipeline_sigmas": flux, "image_tokens": tokens, "mu": mu,
                  "sigmas": floats(sigmas), "timesteps": floats(timesteps)})

sd3 = {"num_train_timesteps": 1000, "shift": 3.0}
add("sd3-28", sd3, 28)
add("sd3-4", sd3, 4)
add("sd3-1", sd3, 1)
add("sd3-terminal-8", {"num_train_timesteps": 1000, "shift": 3.0, "shift_terminal": 0.02}, 8)
dev = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
       "base_image_seq_len": 256, "max_image_seq_len": 4096}
add("flux-dev-1024-28", dev, 28, flux=True, tokens=4096)
add("flux-dev-512-50", dev, 50, flux=True, tokens=1024)
add("flux-dev-linear-768-20", dict(dev, time_shift_type="linear"), 20, flux=True, tokens=2304)
add("flux-schnell-4", {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}, 4, flux=True, tokens=4096)
add("dynamic-default-path-10", dev, 10, tokens=1024)

# One Euler step and one scale_noise on seeded values, in float32 as diffusers computes them.
g = torch.Generator("cpu").manual_seed(7)
x = torch.randn(16, generator=g); v = torch.randn(16, generator=g); x0 = torch.randn(16, generator=g)
sigmas, _ = set_timesteps(sd3, 28)
k = 5
stepped = x.to(torch.float32) + (sigmas[k + 1] - sigmas[k]) * v
noised = sigmas[k] * x + (1.0 - sigmas[k]) * x0
numerics = {"config": sd3, "steps": 28, "index": k, "sample": floats(x), "velocity": floats(v), "original": floats(x0),
            "stepped": floats(stepped), "noised": floats(noised)}

# FlowMatchHeunDiscreteScheduler (diffusers' scheduling_flow_match_heun_discrete.py): the Euler class's static-shift
# spacing, each σ after the first taken twice (2n − 1 calls), and Heun's step on a velocity: a first-order call stores
# x, v and dt = σ_next − σ and steps x + v·dt; its correction call averages the two velocities and steps from the stored x.
def heun_schedule(cfg, steps):
    n_train, shift = cfg.get("num_train_timesteps", 1000), cfg.get("shift", 1.0)
    sigma_min, sigma_max = init_sigmas(n_train, shift, False)
    timesteps = np.linspace(sigma_max * n_train, sigma_min * n_train, steps)
    sigmas = timesteps / n_train
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32)
    timesteps = sigmas * n_train
    timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    return sigmas, timesteps

def heun_run(cfg, steps, x, velocities):
    sigmas, timesteps = heun_schedule(cfg, steps)
    sample = x.clone().to(torch.float32)
    prev_derivative = dt = stored = None
    for i in range(len(timesteps)):
        v = velocities[i]
        first_order = prev_derivative is None
        if first_order:
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = sample - v * sigma
            derivative = (sample - denoised) / sigma
            dt = sigma_next - sigma
            prev_derivative, stored = derivative, sample
            sample = sample + derivative * dt
        else:
            sigma, sigma_next = sigmas[i - 1], sigmas[i]
            denoised = sample - v * sigma_next
            derivative = (sample - denoised) / sigma_next
            derivative = 0.5 * (prev_derivative + derivative)
            sample = stored + derivative * dt
            prev_derivative = dt = stored = None
    return sigmas, timesteps, sample

heun_cases = []
for name, cfg, steps in [("sd3-heun-10", sd3, 10), ("sd3-heun-1", sd3, 1), ("schnell-heun-4", {"num_train_timesteps": 1000, "shift": 1.0}, 4)]:
    g = torch.Generator("cpu").manual_seed(11)
    x = torch.randn(16, generator=g)
    velocities = [torch.randn(16, generator=g) for _ in range(2 * steps - 1)]
    sigmas, timesteps, final = heun_run(cfg, steps, x, velocities)
    heun_cases.append({"name": name, "config": cfg, "steps": steps, "sigmas": floats(sigmas), "timesteps": floats(timesteps),
                       "sample": floats(x), "velocities": [floats(v) for v in velocities], "final": floats(final)})

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "flow_match_reference.json"), "w") as f:
    json.dump({"source": "make_flow_match_reference.py (torch %s, numpy %s)" % (torch.__version__, np.__version__),
               "cases": cases, "step": numerics, "heun": heun_cases}, f, indent=1)
print(len(cases), "cases")
