"""The real command line in a subprocess, as a user runs it: `python -m promix ARGS...`."""

import subprocess
import sys


def promix(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m promix *args` in `cwd` (default: this process's), output captured as
    text; `timeout` seconds at most."""
    return subprocess.run([sys.executable, "-m", "promix", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
