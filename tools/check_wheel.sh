#!/usr/bin/env bash
# Build the wheel and the sdist, install the wheel into a fresh virtual environment
# outside the repository, and run the main job and the summary from an empty folder
# that holds a user's own data.py, layers.py, verify.py, bench.py and data/ package.
# The environment sees the installed dependencies (--system-site-packages) but not the
# repository: refnet comes from the wheel alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
ls "$work"/dist/refnet-*.whl "$work"/dist/refnet-*.tar.gz > /dev/null
python -m venv --system-site-packages "$work/venv"
# the editable install of the repository is hidden from the new environment
"$work/venv/bin/pip" install --quiet --no-deps --force-reinstall --ignore-installed \
    "$work"/dist/refnet-*.whl
mkdir "$work/user" "$work/user/data"
for name in data layers verify bench; do echo "raise SystemExit('$name.py was imported')" \
    > "$work/user/$name.py"; done
echo "raise SystemExit('data/ was imported')" > "$work/user/data/__init__.py"
cd "$work/user"
export REFNET_CACHE="$work/cache"
py="$work/venv/bin/python"
"$py" - <<'PY'
import refnet, refnet.layers.conv
site = refnet.__file__
assert "venv" in site and "refnet.layers" in refnet.layers.conv.__name__, site
print("refnet", refnet.__version__, "from", site)
PY
"$py" -m refnet --version
"$py" -m refnet.summary --arch demo > /dev/null
"$py" -m refnet.train --epochs 1 --quiet --out "$work/run"
test -f "$work/run/log.jsonl"
echo "wheel: ok"
