#!/usr/bin/env bash
# Builds tests/MLNet.Diffusion.Benchmarks with ONNX Runtime's GPU package (-p:Ort=gpu, into artifacts/gpu-check, apart
# from the ordinary CPU build) and runs its gpu-check mode: the synthetic SD 1.5- and SDXL-shaped models with float16
# UNets on CUDA. Arguments go to the check: [--device N] [--steps N] [--runs N] [--quick].
# Exit codes: 0 measured; 2 bad arguments or no dotnet; 3 CUDA cannot be used (the message says what is missing and how
# to fix it); 4 the build failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
artifacts="${MLND_GPU_CHECK_ARTIFACTS:-$root/artifacts/gpu-check}"
if ! command -v dotnet >/dev/null 2>&1; then
  echo "gpu-check: the .NET SDK (dotnet, version 10) is not on PATH. Install it (https://dot.net) and run eng/gpu-check.sh again." >&2
  exit 2
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: nvidia-smi is not on PATH: no NVIDIA driver seems to be installed (the check will say whether CUDA can be used)." >&2
fi
echo "gpu-check: building the benchmarks with Microsoft.ML.OnnxRuntime.Gpu into ${artifacts} ..." >&2
if ! dotnet build "$root/tests/MLNet.Diffusion.Benchmarks" -c Release -p:Ort=gpu --artifacts-path "$artifacts" -nologo -v:q >&2; then
  echo "gpu-check: the build failed (messages above). The GPU package needs a NuGet source that serves Microsoft.ML.OnnxRuntime.Gpu." >&2
  exit 4
fi
exec dotnet "$artifacts/bin/MLNet.Diffusion.Benchmarks/release/MLNet.Diffusion.Benchmarks.dll" gpu-check "$@"
