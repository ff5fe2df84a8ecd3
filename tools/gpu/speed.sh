#!/usr/bin/env bash
# Run ON a lent GPU machine through the device tool, after tools/gpu/prepare.sh here:
#   run(command="bash tools/gpu/speed.sh", carry=[".whl", ".gl"])
# Installs the carried packages, then times the training loop and DiffusionWorld-v0 against MuJoCo
# with tools/bench.py, eager and compiled (issue 10's targets); the tables go to $OUT/speed.txt.
# Written in a session without a GPU (2026-11-23): the first session to run it fixes what breaks.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=egl PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/speed.txt"
for compile in false true; do
  python3 tools/bench.py only=[loop,env] device=cuda compile=$compile loop_batch=64 loop_steps=100 \
    num_envs=[1,64,256,1024] sampler_steps=1 2>&1 | grep -v "it/s]" | tee -a "$out/speed.txt"
done
