#!/usr/bin/env bash
# Rewrites src/MLNet.Diffusion/PublicAPI.Unshipped.txt from the library's current public surface, after a deliberate
# change to it. The build fails (RS0016/RS0017) whenever the surface and the file disagree; review the file's diff
# before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=src/MLNet.Diffusion
printf '#nullable enable\n' > "$lib/PublicAPI.Unshipped.txt"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
dotnet build "$lib/MLNet.Diffusion.csproj" --no-incremental -p:TreatWarningsAsErrors=false -nologo -v q >"$log" 2>&1 || true
{
  printf '#nullable enable\n'
  grep -oP "warning RS0016: Symbol '\K.*(?=' is not part of the declared public API)" "$log" | sort -u
} > "$lib/PublicAPI.Unshipped.txt"
echo "$(($(wc -l < "$lib/PublicAPI.Unshipped.txt") - 1)) public symbols written to $lib/PublicAPI.Unshipped.txt"
dotnet build "$lib/MLNet.Diffusion.csproj" -nologo -v q >/dev/null && echo "the library builds against the new baseline"
