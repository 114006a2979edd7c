#!/bin/sh
# A fresh clone's install, checked: build a wheel with `python -m build`, install it into a new
# virtual environment of PYTHON (default python3), then run `anomalens --help` and a tiny fit and
# predict on samples/mtd. With TORCH set (e.g. TORCH=torch==2.13.0, the CPU wheel on this disk)
# that torch is installed first; otherwise pip picks one for the package's torch>=2.4.
#   PYTHON=python3.12 scripts/check_install.sh
set -eu
PYTHON=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive HEAD | tar -x -C "$work" --one-top-level=src
"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
[ -z "${TORCH:-}" ] || "$bin/pip" install -q "$TORCH"
"$bin/pip" install -q build
"$bin/python" -m build -q --wheel -o "$work/dist" "$work/src"
"$bin/pip" install -q "$work"/dist/anomalens-*.whl
cd "$work"
"$bin/anomalens" --help >/dev/null
"$bin/anomalens" fit src/samples/mtd/train -o model --shots 2 --method anomalydino \
    --resolution 96 --param rotation=false --threads 1
"$bin/anomalens" predict model src/samples/mtd/test -o out --threads 1
"$bin/python" -c "import json; print(len(json.load(open('out/results.json'))['images']), 'images predicted')"
echo "install check passed: $("$bin/python" --version)"
