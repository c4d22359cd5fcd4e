"""Which CTranslate2 this host has, and whether it can run on CUDA here.

The PyPI ctranslate2 4.x wheels are built against CUDA 12: they carry the CUDA runtime but load
cuBLAS 12 (``libcublas.so.12``) and, for Whisper's convolutions, cuDNN 9 (``libcudnn.so.9``) at
run time. A host whose CUDA libraries come with a CUDA 13 torch has ``libcublas.so.13`` instead,
so CTranslate2 can see the GPU and still fail on the first matrix product. The CUDA 12 libraries
come as wheels (``nvidia-cublas-cu12``, ``nvidia-cudnn-cu12``); the dynamic loader only reads
``LD_LIBRARY_PATH`` when a process starts, hence ``reexec_with_cuda12_libs``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

CUDA12_LIBRARIES = ("libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.9")
# Set in the re-executed process, so that it never re-executes again.
_REEXEC_GUARD = "STT_GPU_BATCHING_REEXECUTED"
CUDA12_HINT = (
    "the PyPI ctranslate2 4.x wheel is built against CUDA 12 and needs cuBLAS 12 and cuDNN 9 for CUDA 12 "
    "(pip install nvidia-cublas-cu12 nvidia-cudnn-cu12); a host with only CUDA 13 libraries "
    "(e.g. those of a CUDA 13 torch) cannot run it on the GPU"
)


def cuda12_lib_dirs(search: list[str] | None = None) -> list[Path]:
    """The library folders of the nvidia-*-cu12 wheels (``nvidia/cublas/lib``, ``nvidia/cudnn/lib``) on sys.path."""
    found: list[Path] = []
    for entry in sys.path if search is None else search:
        cublas = Path(entry or ".") / "nvidia" / "cublas" / "lib"
        if not (cublas / "libcublas.so.12").is_file():
            continue
        found.append(cublas)
        cudnn = cublas.parent.parent / "cudnn" / "lib"
        if cudnn.is_dir():
            found.append(cudnn)
    return found


def reexec_with_cuda12_libs() -> None:
    """Start this program again with the cu12 wheels' folders first in LD_LIBRARY_PATH, if any are missing there."""
    if os.environ.get(_REEXEC_GUARD):
        return
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    missing = [str(d) for d in cuda12_lib_dirs() if str(d) not in current]
    if not missing:
        return
    env = {**os.environ, _REEXEC_GUARD: "1", "LD_LIBRARY_PATH": os.pathsep.join([*missing, *current])}
    print(f"re-executing with LD_LIBRARY_PATH += {os.pathsep.join(missing)}", flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def report(device: str) -> dict[str, object]:
    """What CTranslate2 says about itself and CUDA; ``problem`` is set when ``device`` surely cannot be used."""
    try:
        import ctranslate2
    except ImportError as exc:
        return {"problem": f"ctranslate2 cannot be imported ({exc}); install it, e.g. pip install ctranslate2==4.8.5"}
    info: dict[str, object] = {
        "version": ctranslate2.__version__,
        "cuda_device_count": ctranslate2.get_cuda_device_count(),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
    }
    try:
        info["cuda_compute_types"] = sorted(ctranslate2.get_supported_compute_types("cuda"))
    except (RuntimeError, ValueError) as exc:
        info["cuda_compute_types"] = f"error: {exc}"
    info["cpu_compute_types"] = sorted(ctranslate2.get_supported_compute_types("cpu"))
    libraries = {name: loadable(name) for name in CUDA12_LIBRARIES}
    info["cuda12_libraries"] = libraries
    if device == "cuda":
        if info["cuda_device_count"] == 0 or isinstance(info["cuda_compute_types"], str):
            info["problem"] = f"CTranslate2 cannot use CUDA here ({info['cuda_compute_types']}); {CUDA12_HINT}"
        elif not all(libraries.values()):
            # Only a warning: the warm-up run is the real test.
            absent = ", ".join(name for name, ok in libraries.items() if not ok)
            info["warning"] = (
                f"CTranslate2 sees the GPU, but {absent} cannot be loaded: it will likely fail; {CUDA12_HINT}"
            )
    return info


def render(info: dict[str, object]) -> str:
    return "\n".join(f"ctranslate2 {key}: {value}" for key, value in info.items())
