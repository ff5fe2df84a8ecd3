#!/usr/bin/env bash
# Run HERE (the CPU machine), once per session that is lent a GPU: fetches what the GPU image lacks
# into .whl/ (wheels for its python 3.12, x86-64) and .gl/ (the GL loaders MuJoCo's EGL rendering
# needs there); the device tool carries both: `carry: [".whl", ".gl"]`, then `bash tools/gpu/speed.sh`.
# The versions are this project's; the image already has torch, accelerate, einops, h5py, imageio,
# tqdm, numpy, absl-py, etils, cloudpickle and typing-extensions.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl .gl
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms="$platforms --platform $p"
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl \
  gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 \
  pyopengl==3.1.10 hydra-core==1.3.8 omegaconf==2.3.1
# antlr4-python3-runtime 4.9.3 (hydra's parser) is published only as an sdist: build its pure-Python wheel
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
lists=$(mktemp -d)
mkdir -p "$lists/partial"
apt_opts="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
apt-get $apt_opts update -qq
(cd .gl && apt-get $apt_opts download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
ls .whl .gl
