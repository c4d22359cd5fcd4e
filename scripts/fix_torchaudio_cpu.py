"""Delete torchaudio's CUDA-linked extension libraries when the installed torch is a CPU build.

Every torchaudio wheel on the registry links its compiled extension against CUDA. With a CPU
torch that extension fails to load (``libc10_cuda.so``) and ``import torchaudio`` fails; without
it, torchaudio falls back to its pure-Python parts (resample, kaldi fbank), which is all
pyannote.audio needs. With a CUDA torch nothing is touched. Safe to run any number of times.

Usage: ``<venv>/bin/python scripts/fix_torchaudio_cpu.py`` (exits 0 when there is nothing to do).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# Names of CUDA libraries that a CPU torch cannot provide; found as plain strings in DT_NEEDED.
CUDA_MARKERS = (b"libc10_cuda.so", b"libtorch_cuda.so", b"libcudart.so")


def torch_is_cpu_build() -> bool | None:
    """True for a CPU torch, False for a CUDA (or ROCm) one, None when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def torchaudio_lib_dir() -> Path | None:
    # find_spec on a top-level package locates it without running its __init__ (which would fail).
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def cuda_linked_libraries(lib_dir: Path) -> list[Path]:
    return [path for path in sorted(lib_dir.glob("*.so")) if any(m in path.read_bytes() for m in CUDA_MARKERS)]


def main() -> int:
    cpu = torch_is_cpu_build()
    lib_dir = torchaudio_lib_dir()
    if cpu is None or lib_dir is None or not lib_dir.is_dir():
        print("fix_torchaudio_cpu: torch or torchaudio not installed; nothing to do")
        return 0
    if not cpu:
        print("fix_torchaudio_cpu: torch is a CUDA build; torchaudio left as it is")
        return 0
    removed = cuda_linked_libraries(lib_dir)
    for path in removed:
        path.unlink()
    print(f"fix_torchaudio_cpu: removed {len(removed)} CUDA-linked librar{'y' if len(removed) == 1 else 'ies'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
