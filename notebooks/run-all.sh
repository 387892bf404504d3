#!/usr/bin/env bash
# Runs the GettingStarted notebook and its file-based-app twin headless; exits non-zero if any cell or step fails.
#   notebooks/run-all.sh                 # run both
#   notebooks/run-all.sh --save          # also write the notebook's outputs back into GettingStarted.ipynb
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# The notebook #r's the library from the QuickStart sample's build output.
dotnet build samples/QuickStart/QuickStart.csproj -v q -nologo
dotnet tool restore

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== notebooks/GettingStarted.ipynb (dotnet-repl)"
start=$SECONDS
# dotnet-repl runs every cell and exits 2 when any of them failed; the notebook's relative paths start at notebooks/.
(cd notebooks && dotnet dotnet-repl --run GettingStarted.ipynb --exit-after-run --output-path "$out/GettingStarted.ipynb")
echo "   passed in $((SECONDS - start)) s"
if [[ "${1:-}" == "--save" ]]; then
  # Saved outputs name no folder of this machine: the repository becomes "." and the home folder "~" (the kernel
  # prints where it loads SkiaSharp's extension from, under the NuGet cache).
  sed -e "s#$(pwd)#.#g" -e "s#${HOME}#~#g" "$out/GettingStarted.ipynb" > notebooks/GettingStarted.ipynb
  echo "   outputs saved"
fi

echo "== notebooks/GettingStarted.cs (dotnet run)"
start=$SECONDS
dotnet run notebooks/GettingStarted.cs
echo "   passed in $((SECONDS - start)) s"
