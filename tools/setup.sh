#!/usr/bin/env bash
# Set up (or reuse) the Python environment for mmdistill and install mmdistill into it.
#
# The environment lives outside the checkout, by default in ~/.cache/mmdistill/venv, so that
# every clone on this machine reuses it (mmcv's ops take ~7 minutes to compile); `.venv` in the
# repository is a link to it. Set MMDISTILL_VENV to put it elsewhere, PYTHON to pick the
# interpreter (Python 3.11). A correct environment is checked (tools/check_env.py: versions,
# `import mmcv.ops`, torchvision ops, every codebase) and reused; mmdistill itself is
# reinstalled from this checkout every time (seconds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMDISTILL_VENV:-$HOME/.cache/mmdistill/venv}
python=${PYTHON:-python3.11}
log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv with $python"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
ln -sfn "$venv" "$repo/.venv"
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check "$@"; }
req="$repo/requirements"

"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "mmdistill is tested on Python 3.11: set PYTHON=/path/to/python3.11"; exit 1; }

if "$py" "$repo/tools/check_env.py"; then
  log "reusing the environment in $venv"
else
  log "installing the OpenMMLab stack into $venv (first time: ~10 minutes)"
  pip install -q --upgrade pip
  pip install -q -r "$req/build.txt"
  pip install -q -r "$req/torch.txt"
  # mmcv: no build isolation, or the build cannot see torch and silently ships no ops.
  # pip caches the built wheel, so a second install on this machine takes seconds.
  mmcv=$(grep '^mmcv==' "$req/mminstall.txt")
  mmengine=$(grep '^mmengine==' "$req/mminstall.txt")
  pip install -q "$mmengine"
  MAX_JOBS=${MAX_JOBS:-$(nproc)} pip install --no-build-isolation "$mmcv"
  # The codebases go in without their declared dependencies (chumpy, see codebases.txt).
  pip install -q --no-deps $(grep -Ev '^(#|mmcv|mmengine|$)' "$req/mminstall.txt")
  pip install -q -r "$req/codebases.txt"
  # The PyPI wheel of xtcocotools is built against numpy 1.x: rebuild it against ours.
  pip install -q --no-build-isolation --no-binary xtcocotools --no-deps --force-reinstall xtcocotools
  pip install -q --no-deps "$(grep '^openmim' "$req/mim.txt")"
  pip install -q $(grep -Ev '^(#|openmim|$)' "$req/mim.txt")
  "$py" "$repo/tools/check_env.py" || { log "the environment is still not right (see above)"; exit 1; }
fi
# What the tests need on top of the stack (pytest, ruff): a no-op when it is there already.
pip install -q -r "$req/tests.txt"

# mmdistill itself: a regular (not editable) install, so that mmdistill/.mim/ is built and
# `mim train mmdistill CONFIG` finds tools/train.py the way it does for OpenMMLab packages.
log "installing mmdistill from $repo"
pip install -q --no-deps --no-build-isolation --force-reinstall "$repo"
"$py" -c 'import mmdistill, mmcv.ops; print("[setup] mmdistill", mmdistill.__version__, "ready:", mmdistill.__file__)'
