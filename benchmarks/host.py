"""What a benchmark ran on, recorded next to its numbers: one description for every script.

`label()` is the one line that result rows and tables carry; `describe()` is the full record
that the JSON outputs keep. Both name the CPU's ISA, since two CPUs of the same name (an
AVX2-only and an AVX512-BF16 EPYC have both been used here) differ in precision and speed.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from promix.hardware import bf16_is_fast, cpu_isa


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def label() -> str:
    """One line: the GPU, or the CPU with its ISA, core and thread counts; torch's version."""
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        return f"{gpu} (+ {os.cpu_count()} CPU cores), torch {torch.__version__}"
    threads = torch.get_num_threads()
    return (f"{cpu_name()} ({cpu_isa()}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"({threads} threads)")


def cpu_flags() -> list[str]:
    """lscpu's vector and matrix flags (avx*, amx*, fma), or [] where lscpu is missing."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Flags":
            return sorted(f for f in value.split() if f.startswith(("avx", "amx", "fma")))
    return []


def describe() -> dict:
    """The full record: label, CPU, flags, GPU, memory, versions, threads, load average."""
    info = {"label": label(), "cpu": cpu_name(), "isa": cpu_isa(), "flags": cpu_flags(),
            "cpu_count": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
                               1),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "bf16_is_fast": bf16_is_fast(torch.device("cpu")),
            # Taken when the record is made, so it includes the benchmark's own load.
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    return info
