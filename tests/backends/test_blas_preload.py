"""codegen/blas.py: generated modules get scipy's cython_blas without scipy.linalg's
package import (most of a warm cache hit in a fresh process), and scipy.linalg still
imports and works as usual afterwards."""
import subprocess
import sys
import textwrap

import pytest


def run_fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_compiled_net_runs_without_importing_scipy_linalg():
    out = run_fresh("""
        import sys
        import numpy as np
        from c2compile import core, workspace
        net = core.Net("fc")
        net.FC(["x", "w", "b"], "y")
        workspace.FeedBlob("x", np.ones((2, 3), np.float32))
        workspace.FeedBlob("w", np.ones((4, 3), np.float32))
        workspace.FeedBlob("b", np.zeros(4, np.float32))
        workspace.CreateNet(net)
        workspace.RunNet(net)
        assert workspace.FetchBlob("y").tolist() == [[3.0] * 4] * 2
        assert "scipy.linalg.cython_blas" in sys.modules
        print("scipy.linalg" in sys.modules)
    """)
    assert out.split() == ["False"]


def test_scipy_linalg_imported_later_is_whole_and_shares_the_module():
    out = run_fresh("""
        import sys
        from c2compile.codegen import blas
        blas.preload()
        preloaded = sys.modules["scipy.linalg.cython_blas"]
        import numpy as np
        import scipy.linalg
        import scipy.linalg.cython_blas
        assert scipy.linalg.cython_blas is preloaded
        assert np.allclose(scipy.linalg.solve(2 * np.eye(3), np.ones(3)), 0.5)
        assert not [f for f in sys.meta_path if type(f).__module__ == blas.__name__]
        print("ok")
    """)
    assert out.split() == ["ok"]


def test_preload_after_scipy_linalg_changes_nothing():
    out = run_fresh("""
        import sys
        import scipy.linalg
        from c2compile.codegen import blas
        before = sys.modules["scipy.linalg.cython_blas"] if "scipy.linalg.cython_blas" in sys.modules else None
        blas.preload()
        import scipy.linalg.cython_blas
        assert before is None or sys.modules["scipy.linalg.cython_blas"] is before
        assert scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"]
        print("ok")
    """)
    assert out.split() == ["ok"]


def test_set_threads_reaches_scipys_openblas_and_only_it():
    out = run_fresh("""
        from threadpoolctl import threadpool_info
        from c2compile.codegen import blas
        blas.preload()
        def counts():
            return {("scipy" if "scipy.libs" in i["filepath"] else "other"): i["num_threads"]
                    for i in threadpool_info() if i["user_api"] == "blas"}
        before = counts().get("other")
        found = blas.set_threads(1)
        one = counts()
        blas.set_threads(2)
        print(found, one.get("scipy"), counts().get("scipy"), counts().get("other") == before)
    """)
    found, one, two, others_kept = out.split()
    if found == "False":
        pytest.skip("this scipy links another BLAS (limit_blas_threads uses threadpoolctl)")
    assert (one, two, others_kept) == ("1", "2", "True")


@pytest.mark.parametrize("config, core, macs", [
    ("OpenBLAS 0.3.30 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64", "SkylakeX", 10**6),
    ("OpenBLAS 0.3.27 DYNAMIC_ARCH Cooperlake", "Cooperlake", 10**6),
    ("OpenBLAS 0.3.30 DYNAMIC_ARCH Haswell", "Haswell", 0),    # no small-matrix kernels
    ("OpenBLAS 0.3.13 DYNAMIC_ARCH SkylakeX", "SkylakeX", 0),  # before they existed
    ("", "", 0),                                               # scipy on another BLAS
])
def test_small_gemm_macs_follows_the_openblas_core_and_version(monkeypatch, config, core,
                                                                macs):
    from c2compile.codegen import blas
    answers = {"get_config": config, "get_corename": core}
    monkeypatch.setattr(blas, "_openblas_string", answers.__getitem__)
    blas.small_gemm_macs.cache_clear()
    try:
        assert blas.small_gemm_macs() == macs
    finally:
        blas.small_gemm_macs.cache_clear()


@pytest.mark.parametrize("trans, m, n, k, block, rows", [
    ("NN", 1000, 50, 500, 32, 32),    # 10^6 // 25000 = 40 rows: multiples of 16
    ("NT", 800, 500, 64, 16, 16),     # 31 rows fit: 16
    ("NN", 30, 50, 500, 32, 0),       # the whole call fits: no blocks
    ("NN", 1000, 500, 500, 0, 0),     # not even 16 rows fit
    ("TN", 500, 50, 512, 24, 24),     # C at most 1200 elements: 24 x 50
    ("TN", 10, 64, 1568, 8, 8),       # 9 rows fit: multiples of 8
    ("TN", 500, 50, 31, 0, 0),        # K under 32: no small TN kernel
    ("TT", 500, 10, 10, 0, 0),        # no small TT kernel at all
])
def test_small_blocks_follow_the_small_kernels_permit(monkeypatch, trans, m, n, k, block,
                                                      rows):
    from c2compile.codegen import blas
    monkeypatch.setattr(blas, "small_gemm_macs", lambda: 10**6)
    assert blas.small_block(trans[0], trans[1], n, k) == block
    assert blas.small_rows(trans[0], trans[1], m, n, k) == rows
    monkeypatch.setattr(blas, "small_gemm_macs", lambda: 0)
    assert blas.small_block(trans[0], trans[1], n, k) == 0


def test_small_columns_come_in_multiples_of_8(monkeypatch):
    """Columns (the kernel's N) in multiples of 8, rows (its vector M) of 16: 64 pixels over
    K = 576 take 27 channels, so 24; 16 rows would not fit in 27 either way."""
    from c2compile.codegen import blas
    monkeypatch.setattr(blas, "small_gemm_macs", lambda: 10**6)
    assert blas.small_block("N", "N", 64, 576, columns=True) == 24
    assert blas.small_block("N", "N", 64, 576) == 16
    assert blas.small_block("N", "N", 64, 2000, columns=True) == 0   # 7 columns
    assert blas.small_block("T", "N", 64, 500, columns=True) == 16   # C within 1200


def test_this_machines_openblas_is_described():
    """The real library answers: a version and a core name (so the rule above applies)."""
    from c2compile.codegen import blas
    assert blas._openblas_string("get_config").startswith("OpenBLAS ")
    assert blas._openblas_string("get_corename")
