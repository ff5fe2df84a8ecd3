"""Per-device speed settings: when to `torch.compile` and how, and when to autocast to bf16."""

from __future__ import annotations

import torch
from torch import nn


def compile_enabled(setting: bool | str, device: torch.device | str) -> bool:
    """setting: true | false | "auto" (on for CUDA, where compiling the denoiser measured 2.3x in
    training and 3.5x in sampling on an H100; off elsewhere: on this project's 2-core CPU it did not
    pay, docs/benchmarks.md)."""
    if isinstance(setting, str):
        if setting != "auto":
            raise ValueError(f"compile must be true, false or auto, got {setting!r}.")
        return torch.device(device).type == "cuda"
    return bool(setting)


def compile_mode(device: torch.device | str) -> str:
    """Sampling's compile mode: on CUDA "reduce-overhead" (CUDA graphs: a small batch's step is
    kernel launches, which a graph replays at once), elsewhere the default."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"


def default_bf16(device: torch.device | str) -> bool:
    """Imagine in bf16 autocast by default where the hardware computes bf16 natively: CPUs with AMX
    or AVX512-BF16 (~2x faster than fp32) and GPUs with bf16 tensor cores (Ampere and newer). An
    AVX2-only CPU emulates bf16: there it is 5-7x slower than fp32 (one reacher world 0.23 vs 0.05 s
    per step on a 2-core AMD EPYC)."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX512-BF16)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's own probes (private, hence the guard)
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(mixed_precision: str, device: str | None) -> str:
    """A training config's mixed_precision: "auto" -> "bf16" where `default_bf16` says so (device
    "cpu", or else CUDA when there is one), else "no"; other values unchanged."""
    if mixed_precision != "auto":
        return mixed_precision
    target = "cpu" if device == "cpu" or not torch.cuda.is_available() else "cuda"
    return "bf16" if default_bf16(target) else "no"


def convolutions_to_bf16(*networks: nn.Module | None) -> None:
    """Stores the convolutions' weights in bf16, in place, for networks that only run under bf16
    autocast: autocast rounds them to bf16 on every call anyway (the same rounding, so the same
    outputs), a copy of every weight per call that a single world's step pays in full."""
    for network in networks:
        for module in [] if network is None else network.modules():
            if isinstance(module, nn.Conv2d):
                module.to(torch.bfloat16)
