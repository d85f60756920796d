#!/usr/bin/env bash
# Local helper: rebuilds the release CLI and the GPU test binaries into .gpu/bin (git-ignored) for a device run.
set -euo pipefail
cargo build --release -p vqllm-cli
mkdir -p .gpu/bin
cp target/release/vqllm .gpu/bin/vqllm
for t in gpu gpu_linear gpu_attention; do
  f=$(cargo test --release -p vqllm-cuda --test "$t" --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("executable") and m.get("target",{}).get("kind")==["test"]: print(m["executable"])' | tail -1)
  rm -f .gpu/bin/test-"$t"-bin
  cp "$f" .gpu/bin/test-"$t"-bin
done
ls -la .gpu/bin | tail -5
