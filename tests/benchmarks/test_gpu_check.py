"""benchmarks/gpu_check.py without a GPU. Its whole path also runs on the CPU (``--device cpu --size tiny``), a
few minutes on 2 loaded cores: documentation/benchmarks.md, not the test suite."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "no CUDA device" in done.stdout
