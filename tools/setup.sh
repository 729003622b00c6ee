#!/usr/bin/env bash
# Set up (or reuse) a Python environment with a tested OpenMMLab stack and install mmdistill.
#
# MMDISTILL_STACK picks the stack (the versions: README's installation table):
#   newest (default)  Python 3.11, torch 2.13;  ~/.cache/mmdistill/venv,        linked as .venv
#   oldest            Python 3.8,  torch 2.0.1; ~/.cache/mmdistill/venv-oldest, linked as .venv-oldest
# The environment lives outside the checkout so that every clone on this machine reuses it
# (mmcv's ops take 7-9 minutes to compile). Set MMDISTILL_VENV to put it elsewhere, PYTHON to
# pick the interpreter (found on PATH, else in pyenv). A correct environment is checked
# (tools/check_env.py: versions, `import mmcv.ops`, torchvision ops, every codebase) and reused;
# mmdistill itself is reinstalled from this checkout every time (seconds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[setup] %s\n' "$*"; }
stack=${MMDISTILL_STACK:-newest}
case "$stack" in
  newest) want=3.11 name=venv link=.venv req="$repo/requirements" ;;
  oldest) want=3.8 name=venv-oldest link=.venv-oldest req="$repo/requirements/oldest" ;;
  *) log "MMDISTILL_STACK=$stack is not a stack: use newest or oldest"; exit 1 ;;
esac
venv=${MMDISTILL_VENV:-$HOME/.cache/mmdistill/$name}
# A stack's own requirements file, else the one both stacks share (requirements/NAME).
reqfile() { if [ -f "$req/$1" ]; then echo "$req/$1"; else echo "$repo/requirements/$1"; fi; }

if [ ! -x "$venv/bin/python" ]; then
  python=${PYTHON:-}
  if [ -z "$python" ]; then
    if "python$want" -c '' 2>/dev/null; then
      python=python$want
    else  # pyenv's shims refuse a version that is installed but not selected: take it directly
      python=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/$want".*/bin/python"$want" \
        2>/dev/null | sort -V | tail -n 1)
    fi
  fi
  [ -n "$python" ] || { log "no Python $want found: install it (e.g. pyenv install $want) or set PYTHON"; exit 1; }
  log "creating $venv with $python"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
ln -sfn "$venv" "$repo/$link"
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check "$@"; }

"$py" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$want', sys.version" \
  || { log "the $stack stack is tested on Python $want: set PYTHON=/path/to/python$want"; exit 1; }

installed=
if "$py" "$repo/tools/check_env.py" --stack "$stack"; then
  log "reusing the environment in $venv"
else
  installed=yes
  log "installing the OpenMMLab stack into $venv (first time: ~10 minutes)"
  pip install -q --upgrade pip
  pip install -q -r "$(reqfile build.txt)"
  pip install -q -r "$(reqfile torch.txt)"
  # mmcv: no build isolation, or the build cannot see torch and silently ships no ops.
  # pip caches the built wheel, so a second install on this machine takes seconds.
  mmcv=$(grep '^mmcv==' "$(reqfile mminstall.txt)")
  mmengine=$(grep '^mmengine==' "$(reqfile mminstall.txt)")
  pip install -q "$mmengine"
  MAX_JOBS=${MAX_JOBS:-$(nproc)} pip install --no-build-isolation "$mmcv"
  # The codebases go in without their declared dependencies (chumpy, see codebases.txt).
  pip install -q --no-deps $(grep -Ev '^(#|mmcv|mmengine|$)' "$(reqfile mminstall.txt)")
  pip install -q -r "$(reqfile codebases.txt)"
  # The PyPI wheel of xtcocotools is built against numpy 1.x: rebuild it against ours.
  pip install -q --no-build-isolation --no-binary xtcocotools --no-deps --force-reinstall xtcocotools
  pip install -q --no-deps "$(grep '^openmim' "$(reqfile mim.txt)")"
  pip install -q $(grep -Ev '^(#|openmim|$)' "$(reqfile mim.txt)")
fi
# What the tests need on top of the stack (pytest, ruff): a no-op when it is there already.
pip install -q -r "$(reqfile tests.txt)"
if [ -n "$installed" ]; then
  "$py" "$repo/tools/check_env.py" --stack "$stack" || { log "the environment is still not right (see above)"; exit 1; }
fi

# mmdistill itself: a regular (not editable) install, so that mmdistill/.mim/ is built and
# `mim train mmdistill CONFIG` finds tools/train.py the way it does for OpenMMLab packages.
log "installing mmdistill from $repo"
pip install -q --no-deps --no-build-isolation --force-reinstall "$repo"
"$py" -c 'import mmdistill, mmcv.ops; print("[setup] mmdistill", mmdistill.__version__, "ready:", mmdistill.__file__)'
