"""The scoring profile a worker runs with: the job's requested settings resolved against the node.

`resolve()` is pure: what was asked (`JobSettings`), what the node can do
(`Capabilities`) and which reduced precisions the model was checked for
(`ModelMetadata.precision_agreement`) give one `Profile`, with the reason for
every automatic choice. `probe()` reads the node's capabilities (imports torch).

Rules for `auto`:
- device: CUDA when usable, else CPU. Asking for `cuda` where it is not usable
  is an error naming what is missing, never a silent CPU run.
- precision: fp16 on CUDA, bf16 on a CPU with native bf16 instructions, else
  fp32; a reduced precision only when the model records a top-1 agreement with
  fp32 of at least `MIN_AGREEMENT` for it (`python -m scoring check-precision`).
- channels-last on; batch 32 on CPU; on CUDA the largest that fits this worker's
  share of the free GPU memory (found at init, at most the mini-batch), staged in
  pinned memory; decoding inline where every core runs a worker (the default,
  4 workers on a 4-vCPU NC4as_T4_v3), else the node's cores shared among the
  workers on CUDA; the JPEG decoder chosen at init (`scoring.decoders.choose`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from scoring.job_settings import AUTO, JobSettings

MIN_AGREEMENT = 0.995
CPU_BATCH_SIZE = 32
FIT_GPU = 0  # batch_size placeholder: measured against free GPU memory once the model is loaded
_REDUCED_FOR = {"cuda": ("fp16",), "cpu": ("bf16",)}


class ProfileError(RuntimeError):
    """The requested profile cannot run on this node; the message is the one line to show."""


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What the node offers. `cuda_problem` is None when CUDA is usable, else what is missing."""

    cpus: int
    cpu_bf16: bool
    cuda_problem: str | None
    cuda_name: str | None = None
    torch_build: str = ""  # e.g. "torch 2.14.1+cu130 is built for CUDA 13.0", for the error's advice


@dataclasses.dataclass(frozen=True)
class Profile:
    device: str
    precision: str
    channels_last: bool
    batch_size: int
    decode_threads: int
    compile: bool
    decoder: str = "pillow"  # `auto` on CUDA until init() has probed (scoring.decoders.choose)
    reasons: tuple[str, ...] = ()
    # torch's intra-op threads: the node's cores shared among its workers (16 workers x 16 threads thrash).
    torch_threads: int = 1
    # Batches staged in page-locked memory on CUDA, so that their copy to the GPU overlaps the decoding.
    pin_memory: bool = False
    workers: int = 1  # worker processes sharing the node (its cores, its GPU)

    def describe(self, *, reasons: bool = True) -> str:
        batch = "fitted to GPU memory" if self.batch_size == FIT_GPU else str(self.batch_size)
        decode = "inline" if self.decode_threads == 0 else f"{self.decode_threads} threads"
        text = (f"{self.device}, {self.precision}, channels_last {'on' if self.channels_last else 'off'}, "
                f"batch {batch}, decode {decode}, decoder {self.decoder}, compile {'on' if self.compile else 'off'}")
        return text + (f" ({'; '.join(self.reasons)})" if reasons and self.reasons else "")


def resolve(requested: JobSettings, capabilities: Capabilities, agreement: Mapping[str, float]) -> Profile:
    """The concrete profile for this node; raises `ProfileError` when the request cannot be honoured."""
    reasons: list[str] = []
    device = requested.device
    if device == AUTO:
        device = "cuda" if capabilities.cuda_problem is None else "cpu"
        reasons.append(f"device auto: {capabilities.cuda_name or 'CUDA'}" if device == "cuda"
                       else f"device auto: cpu, CUDA not usable: {capabilities.cuda_problem}")
    elif device == "cuda" and capabilities.cuda_problem is not None:
        raise ProfileError(f"device=cuda was asked for but CUDA is not usable here: {capabilities.cuda_problem}; "
                           f"{capabilities.torch_build}: run on a GPU node whose driver supports it, or set device=cpu")

    precision = requested.precision
    if precision == "fp16" and device != "cuda":
        raise ProfileError("precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if precision == AUTO:
        precision = "fp32"
        candidates = _REDUCED_FOR[device] if (device == "cuda" or capabilities.cpu_bf16) else ()
        if not candidates:
            reasons.append("precision auto: fp32, this CPU has no native bf16")
        for candidate in candidates:
            measured = agreement.get(candidate)
            if measured is not None and measured >= MIN_AGREEMENT:
                precision = candidate
                reasons.append(f"precision auto: {candidate}, the model's top-1 agreement with fp32 is "
                               f"{measured:.2%} >= {MIN_AGREEMENT:.1%}")
                break
            reasons.append(f"precision auto: fp32, {candidate} " + (
                f"agrees with fp32 on {measured:.2%} of images, below {MIN_AGREEMENT:.1%}" if measured is not None
                else "was never checked for this model (python -m scoring check-precision)"))

    workers = requested.max_concurrency_per_instance or capabilities.cpus  # 0: one per core
    batch_size = requested.batch_size or (FIT_GPU if device == "cuda" else CPU_BATCH_SIZE)
    decode_threads = requested.decode_threads
    if decode_threads < 0:
        # A worker per core decodes inline (measured best, CPU and GPU alike); fewer workers share the cores.
        decode_threads = capabilities.cpus // workers if device == "cuda" and workers < capabilities.cpus else 0
    return Profile(device=device, precision=precision, channels_last=requested.channels_last != "off",
                   batch_size=batch_size, decode_threads=decode_threads, compile=requested.compile,
                   decoder=requested.decoder, reasons=tuple(reasons), torch_threads=max(1, capabilities.cpus // workers),
                   pin_memory=device == "cuda", workers=workers)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a `taskset` or a container's cpuset), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def probe() -> Capabilities:
    """This node's capabilities: CPU count, native bf16, and whether CUDA is usable (and if not, why)."""
    return Capabilities(cpus=usable_cores(),
                        cpu_bf16=cpu_has_native_bf16(), cuda_problem=cuda_problem(), cuda_name=_cuda_name(),
                        torch_build=_torch_build())


def cuda_problem() -> str | None:
    """None when CUDA is usable; else a short phrase naming what is missing: the CUDA build, the driver, a device."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"no GPU is visible to this process (CUDA_VISIBLE_DEVICES={visible!r})"
    if os.name == "posix" and not any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")):
        return "no NVIDIA driver on this node (no /dev/nvidiactl)"
    try:
        if torch.cuda.device_count() == 0:
            return "the NVIDIA driver reports no CUDA device"
        torch.cuda.init()
        capability, built_for = torch.cuda.get_device_capability(), torch.cuda.get_arch_list()
    except Exception as error:  # noqa: BLE001 - any failure here means "not usable"; say which
        text = " ".join(str(error).split())
        return f"CUDA failed to initialise ({type(error).__name__}: {text}); the driver may be older than the build needs"
    return unsupported_gpu(capability, built_for, _cuda_name() or "this GPU", _torch_build())


def unsupported_gpu(capability: tuple[int, int], built_for: list[str], name: str, build: str) -> str | None:
    """None when the build's kernels run on a GPU of `capability`; else why not, in one phrase.

    A build runs a GPU when it has kernels for the same major architecture at the same or a lower minor
    (sm_80 kernels run on sm_86), or PTX (`compute_XY`) at or below it, which the driver compiles for newer
    GPUs. Without either, the first kernel fails with "no kernel image is available": say so at init().
    """
    major, minor = capability
    for arch in built_for:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        arch_major, arch_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return None
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return None
    return (f"{name} is sm_{major}{minor}, and {build} has kernels only for {', '.join(built_for) or 'none'}; "
            "use a job environment whose torch build covers this GPU (a newer CUDA build)")


def _torch_build() -> str:
    import torch

    return f"torch {torch.__version__} is built for CUDA {torch.version.cuda}" if torch.version.cuda else \
        f"torch {torch.__version__} is a CPU-only build"


def _cuda_name() -> str | None:
    import torch

    try:
        return torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a name is a courtesy
        return None


def cpu_has_native_bf16() -> bool:
    """x86 AVX512-BF16 or AMX-BF16, or Arm's BF16 extension: where bf16 matmuls run at full speed."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False
