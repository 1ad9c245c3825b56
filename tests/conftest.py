"""Test-wide settings: hypothesis profiles and a fresh workspace per test."""
import os
import pathlib

import pytest
from hypothesis import settings

# "ci" is derandomized so a CI failure reproduces; "dev" explores new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _fresh_workspace(tmp_path):
    """Each test starts in an empty default workspace rooted in its own temp folder."""
    from c2compile import workspace
    workspace.SwitchWorkspace("default")
    workspace.ResetWorkspace(str(tmp_path))
    yield
    workspace.SwitchWorkspace("default")


@pytest.fixture(params=[0, 1_000_000], ids=["packed-sgemm", "small-sgemm"])
def small_gemm(request, monkeypatch):
    """Kernels generated as for an OpenBLAS without, then with, the unpacked small-matrix
    sgemm kernel (codegen/blas.small_gemm_macs, which sizes GEMM blocks to fit it): both
    forms are right whichever kernel this machine's OpenBLAS has; only the speed differs."""
    from c2compile.codegen import blas
    monkeypatch.setattr(blas, "small_gemm_macs", lambda: request.param)
    return request.param


# ----------------------------------------------------------------------------- real models

MODELS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "models"

# Weights for the real SqueezeNet 1.1 predict nets (shared with the benchmarks and the example).
from c2compile.squeezenet import FIRES as SQUEEZENET_FIRES  # noqa: E402,F401
from c2compile.squeezenet import init_net as squeezenet_init_net  # noqa: E402,F401
from c2compile.squeezenet import weight_shapes as squeezenet_weight_shapes  # noqa: E402,F401


def load_netdef(name: str):
    from c2compile.proto import caffe2_pb2
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    net = caffe2_pb2.NetDef()
    net.ParseFromString(path.read_bytes())
    return net
