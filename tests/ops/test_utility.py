"""Print and Summarize: console and file output in Caffe2's exact format (lines recorded
from the PyTorch 1.10.2 Caffe2 build), every_n/limit, statistics against torch.

Semantics pinned from Caffe2 1.x (caffe2/operators/utility_ops.h PrintOp,
caffe2/core/tensor.h TensorPrinter, caffe2/operators/summarize_op.cc).
"""
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from c2compile.errors import ArgumentError, ShapeError
from c2compile.ops import get_op
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, make_op, run
from c2compile.proto import caffe2_pb2
from c2compile.runtime.workspace import Workspace

SOME = settings(max_examples=30, deadline=None)

X = np.array([[1.5, 2, 3.25], [4, 5, 1e-7]], np.float32)


def names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


def run_net(tmp_path, ops, feeds, times=1):
    """Run `ops` as one net `times` times in a workspace rooted at tmp_path."""
    ws = Workspace("utility", str(tmp_path))
    for k, v in feeds.items():
        ws.feed(k, v)
    net = caffe2_pb2.NetDef(name="n")
    net.op.extend(ops)
    ws.create_net(net)
    ws.run_net("n", times)
    return ws


def read(path):
    return path.read_bytes()


# ----------------------------------------------------------------------------- Print

# (blob, value, the line Caffe2 1.10.2 wrote to <root>/<blob>.log)
CAFFE2_LINES = [
    ("x", X, b"Tensor x of type float. Dims: (2,3,): 1.5,2,3.25,4,5,1e-07\n"),
    ("i", np.array([1, 2, 3], np.int64), b"Tensor i of type long int. Dims: (3,): 1,2,3\n"),
    ("z", np.array(7, np.int32), b"Tensor z of type int. Dims: (): 7\n"),
    ("b", np.array([True, False]), b"Tensor b of type bool. Dims: (2,): 1,0\n"),
    ("d", np.array([1 / 3, 1e-300, 12345678.9]),
     b"Tensor d of type double. Dims: (3,): 0.333333,1e-300,1.23457e+07\n"),
    ("f", np.array([np.inf, -np.inf, 1e20, 123456789, 0.1, -0.0], np.float32),
     b"Tensor f of type float. Dims: (6,): inf,-inf,1e+20,1.23457e+08,0.1,-0\n"),
    ("e", np.zeros((0, 3), np.int32), b"Tensor e of type int. Dims: (0,3,): \n"),
    ("u8", np.array([1, 200], np.uint8),
     b"Tensor u8 of type unsigned char. Dims: (2,): \x01,\xc8\n"),
    ("s", np.array([b"x y", b"z"], dtype=object),
     b"Tensor s of type std::basic_string<char>. Dims: (2,): x y,z\n"),
    ("h", np.zeros((0,), np.float16), b"Tensor h of type c10::Half. Dims: (0,): \n"),
]


@pytest.mark.parametrize("name, value, line", CAFFE2_LINES, ids=[c[0] for c in CAFFE2_LINES])
def test_print_to_file_matches_caffe2(tmp_path, name, value, line):
    run_net(tmp_path, [make_op("Print", [name], [], to_file=1)], {name: value})
    assert read(tmp_path / f"{name}.log") == line


def test_print_to_stdout(capsys):
    assert run("Print", [X], outputs=0, input_names=["x"]) == []
    out = capsys.readouterr().out
    assert out == "Tensor x of type float. Dims: (2,3,): 1.5,2,3.25,4,5,1e-07\n"


def test_print_limit_and_default_limit(tmp_path, capsys):
    big = np.arange(1500, dtype=np.int32)
    run_net(tmp_path, [make_op("Print", ["big"], [], to_file=1)], {"big": big})
    values = read(tmp_path / "big.log").split(b"): ", 1)[1].rstrip(b"\n").split(b",")
    assert values == [str(v).encode() for v in range(1000)]  # limit 0 means 1000
    run("Print", [X], outputs=0, input_names=["x"], limit=2)
    assert capsys.readouterr().out == "Tensor x of type float. Dims: (2,3,): 1.5,2\n"


@SOME
@given(every_n=st.integers(1, 4), runs=st.integers(1, 9))
def test_print_every_n_appends_to_the_file(tmp_path_factory, every_n, runs):
    tmp_path = tmp_path_factory.mktemp("p")
    it = np.array([0], np.int64)
    run_net(tmp_path, [make_op("Iter", ["it"], ["it"]),
                       make_op("Print", ["it"], [], to_file=1, every_n=every_n)],
            {"it": it}, runs)
    # Caffe2 prints on the 1st, (1+n)th, (1+2n)th... run
    printed = [r + 1 for r in range(runs) if r % every_n == 0]
    want = b"".join(b"Tensor it of type long int. Dims: (1,): %d\n" % v for v in printed)
    assert read(tmp_path / "it.log") == want


def test_print_truncates_the_file_of_an_earlier_op(tmp_path):
    (tmp_path / "x.log").write_bytes(b"old\n")
    run_net(tmp_path, [make_op("Print", ["x"], [], to_file=1, limit=1)], {"x": X}, 2)
    assert read(tmp_path / "x.log") == b"Tensor x of type float. Dims: (2,3,): 1.5\n" * 2


@pytest.mark.parametrize("value, args, err", [
    (np.ones(2, np.int16), {}, ShapeError),       # Caffe2 cannot print int16
    (np.ones(2, np.float16), {}, ShapeError),
    (np.ones(2, np.int8), {}, ShapeError),
    (X, dict(every_n=0), ArgumentError),
    (X, dict(limit=-1), ArgumentError),
    (X, dict(to_file=1, every=2), ArgumentError),  # unknown argument
])
def test_print_errors(value, args, err):
    with pytest.raises(err) as e:
        run("Print", [value], outputs=0, **args)
    names_op(e, "Print")


def test_print_file_in_missing_folder_is_an_op_error(tmp_path):
    # Caffe2 does not replace '/' in Print's file name: a/x.log needs the folder a/
    from c2compile.errors import OpError
    with pytest.raises(OpError) as e:
        run_net(tmp_path, [make_op("Print", ["a/x"], [], to_file=1)], {"a/x": X})
    assert "Print" in str(e.value) and "a/x.log" in str(e.value)


def test_print_schema():
    d = get_op("Print")
    assert d.host_only and d.outputs == (0, 0)
    assert infer("Print", [TensorType((2, 3))], outputs=0) == []


# ----------------------------------------------------------------------------- Summarize

@SOME
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6),
                    elements=st.floats(-100, 100, width=32)))
def test_summarize_matches_torch(x):
    (y,) = run("Summarize", [x])
    t = torch.from_numpy(x.astype(np.float64)).reshape(-1)
    std = 0.0 if t.numel() == 1 else float(torch.std(t, unbiased=True))  # sample std
    want = np.array([t.min(), t.max(), t.mean(), std])
    assert y.dtype == np.float32 and y.shape == (4,)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)


def test_summarize_one_element_has_zero_std():
    (y,) = run("Summarize", [np.array([3.0], np.float32)])
    np.testing.assert_array_equal(y, np.array([3, 3, 3, 0], np.float32))


def test_summarize_to_file_matches_caffe2(tmp_path):
    ws = run_net(tmp_path, [make_op("Summarize", ["a/x"], ["s"], to_file=1),
                            make_op("Summarize", ["x"], [], to_file=1)],
                 {"a/x": X, "x": X}, 3)
    # recorded from Caffe2 1.10.2: '/' in the blob name becomes '#'
    assert read(tmp_path / "a#x.summary") == b"1e-07 5 2.625 1.81487\n" * 3
    assert read(tmp_path / "x.summary") == b"1e-07 5 2.625 1.81487\n" * 3
    np.testing.assert_allclose(ws.fetch("s"), [1e-7, 5, 2.625, 1.8148692], rtol=1e-6)


@pytest.mark.parametrize("value, names, err", [
    (np.zeros((0, 3), np.float32), (["x"], ["s"]), ShapeError),  # nothing to summarize
    (np.ones(3), (["x"], ["s"]), ShapeError),                     # float64
    (np.ones(3, np.int32), (["x"], ["s"]), ShapeError),
    (np.ones(3, np.float32), (["x"], ["x"]), ArgumentError),      # not in place
])
def test_summarize_errors(value, names, err):
    with pytest.raises(err) as e:
        run("Summarize", [value], input_names=names[0], outputs=names[1])
    names_op(e, "Summarize")


def test_summarize_schema():
    assert get_op("Summarize").host_only
    assert infer("Summarize", [TensorType((2, 3))]) == [TensorType((4,), np.float32)]
    assert infer("Summarize", [TensorType((2, 3))], outputs=0) == []
