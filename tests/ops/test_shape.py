"""Shape ops against PyTorch CPU (cat, split, reshape, permute, squeeze, narrow, ...) and
pinned Caffe2 facts (split_info, Reshape's 0 and -1, Slice's negative indices)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from c2compile.errors import ArgumentError, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)
shapes = st.lists(dim, min_size=1, max_size=4)
dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64])


def _data(seed, shape, dtype=np.float32):
    r = np.random.default_rng(seed)
    return np.asarray(r.standard_normal(shape) * 10).astype(dtype)


def _same(ours, ref):
    ref = ref.numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    np.testing.assert_array_equal(ours, ref)


def _names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


# ----------------------------------------------------------------------------- Concat

@SETTINGS
@given(seed=seeds, base=shapes, n=st.integers(1, 4), data=st.data(), dtype=dtypes)
def test_concat_matches_torch_cat(seed, base, n, data, dtype):
    nd = len(base)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="sizes")
    xs = []
    for i, k in enumerate(sizes):
        s = list(base)
        s[axis] = k
        xs.append(_data(seed + i, s, dtype))
    y, info = run("Concat", xs, 2, axis=axis)
    _same(y, torch.cat([torch.from_numpy(x) for x in xs], dim=axis))
    _same(info, np.asarray(sizes, np.int32))


@SETTINGS
@given(seed=seeds, base=shapes, n=st.integers(1, 4), data=st.data())
def test_concat_add_axis_matches_torch_stack(seed, base, n, data):
    nd = len(base)
    axis = data.draw(st.integers(-nd - 1, nd), label="axis")
    xs = [_data(seed + i, base) for i in range(n)]
    y, info = run("Concat", xs, 2, axis=axis, add_axis=1)
    _same(y, torch.stack([torch.from_numpy(x) for x in xs], dim=axis))
    _same(info, np.ones(n, np.int32))


def test_concat_default_and_order_axes():
    a, b = _data(0, (2, 3, 4, 5)), _data(1, (2, 1, 4, 5))
    y, info = run("Concat", [a, b], 2)                      # default: NCHW -> axis 1
    _same(y, np.concatenate([a, b], 1))
    _same(info, np.array([3, 1], np.int32))
    c, d = _data(2, (2, 3, 4, 5)), _data(3, (2, 3, 4, 2))
    y, info = run("Concat", [c, d], 2, order="NHWC")        # NHWC -> axis 3
    _same(y, np.concatenate([c, d], 3))
    _same(info, np.array([5, 2], np.int32))
    y, _ = run("DepthConcat", [a, b], 2)
    _same(y, np.concatenate([a, b], 1))


def test_concat_mismatched_shapes_names_op_and_shapes():
    a, b = np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 5), np.float32)
    with pytest.raises(ShapeError) as err:
        run("Concat", [a, b], 2, axis=1)
    _names_op(err, "Concat")
    assert "[2, 3, 4]" in str(err.value) and "[2, 3, 5]" in str(err.value)
    with pytest.raises(ShapeError) as err:                  # rank differs
        run("Concat", [a, a[0]], 2, axis=0)
    _names_op(err, "Concat")
    with pytest.raises(ShapeError) as err:                  # add_axis needs equal shapes
        run("Concat", [a, a[:, :2]], 2, axis=0, add_axis=1)
    _names_op(err, "Concat")
    with pytest.raises(ShapeError) as err:                  # dtypes differ
        run("Concat", [a, a.astype(np.float64)], 2, axis=0)
    _names_op(err, "Concat")


def test_concat_bad_arguments():
    a = np.zeros((2, 3), np.float32)
    for args in (dict(axis=2), dict(axis=-3), dict(axis=1, order="NCHW"), dict(order="CHW"),
                 dict(order="NCHW", add_axis=1)):
        with pytest.raises(ArgumentError) as err:
            run("Concat", [a, a], 2, **args)
        _names_op(err, "Concat")
    with pytest.raises(ArgumentError) as err:               # split_info output is required
        run("Concat", [a, a], 1, axis=0)
    _names_op(err, "Concat")
    with pytest.raises(ArgumentError) as err:               # no in-place form
        run("Concat", [a, a], ["x", "info"], input_names=["x", "y"], axis=0)
    _names_op(err, "Concat")


def test_concat_infer_unknown_input():
    y, info = infer("Concat", [TensorType((2, 3)), TensorType(None)], outputs=2, axis=0)
    assert y.shape is None and y.dtype == np.float32
    assert info.shape == (2,) and info.dtype == np.int32


# ----------------------------------------------------------------------------- Split

@SETTINGS
@given(seed=seeds, base=shapes, data=st.data(), dtype=dtypes, how=st.sampled_from(["arg", "input"]))
def test_split_matches_torch_split(seed, base, data, dtype, how):
    nd = len(base)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4), label="sizes")
    shape = list(base)
    shape[axis] = sum(sizes)
    x = _data(seed, shape, dtype)
    if how == "arg":
        outs = run("Split", [x], len(sizes), axis=axis, split=sizes)
    else:
        outs = run("Split", [x, np.asarray(sizes, np.int32)], len(sizes), axis=axis)
    refs = torch.split(torch.from_numpy(x), sizes, dim=axis)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        _same(o, r)


@SETTINGS
@given(seed=seeds, base=shapes, n=st.integers(1, 4), data=st.data())
def test_split_equal_parts_and_add_axis(seed, base, n, data):
    nd = len(base)
    axis = data.draw(st.integers(0, nd - 1), label="axis")
    shape = list(base)
    shape[axis] *= n
    x = _data(seed, shape)
    for o, r in zip(run("Split", [x], n, axis=axis), torch.chunk(torch.from_numpy(x), n, axis)):
        _same(o, r)
    shape[axis] = n
    x = _data(seed, shape)
    outs = run("Split", [x], n, axis=axis, add_axis=1)
    for o, r in zip(outs, torch.unbind(torch.from_numpy(x), axis)):
        _same(o, r)


def test_split_order_and_alias():
    x = _data(0, (2, 3, 4, 6))
    a, b = run("Split", [x], 2, order="NHWC")
    _same(a, x[..., :3])
    _same(b, x[..., 3:])
    a, b, c = run("DepthSplit", [x], 3)                    # default NCHW -> axis 1
    _same(b, x[:, 1:2])


def test_split_bad_sizes():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ArgumentError) as err:
        run("Split", [x], 2, axis=1, split=[2, 2])          # sums to 4, not 5
    _names_op(err, "Split")
    assert "[2, 2]" in str(err.value) and "5" in str(err.value)
    with pytest.raises(ShapeError) as err:
        run("Split", [x, np.array([1, 1], np.int32)], 2, axis=1)
    _names_op(err, "Split")
    with pytest.raises(ShapeError) as err:                  # 5 does not split in 2
        run("Split", [x], 2, axis=1)
    _names_op(err, "Split")
    with pytest.raises(ArgumentError) as err:               # 3 sizes for 2 outputs
        run("Split", [x], 2, axis=1, split=[1, 2, 2])
    _names_op(err, "Split")
    with pytest.raises(ShapeError) as err:                  # sizes input must be int32
        run("Split", [x, np.array([2, 3], np.int64)], 2, axis=1)
    _names_op(err, "Split")
    with pytest.raises(ArgumentError) as err:               # both input and argument
        run("Split", [x, np.array([2, 3], np.int32)], 2, axis=1, split=[2, 3])
    _names_op(err, "Split")
    with pytest.raises(ArgumentError) as err:
        run("Split", [x], 2, axis=2)
    _names_op(err, "Split")


def test_split_infer_with_sizes_input_is_unknown():
    outs = infer("Split", [TensorType((2, 6)), TensorType((2,), np.int32)], outputs=2, axis=1)
    assert [o.shape for o in outs] == [None, None]
    outs = infer("Split", [TensorType((2, 6))], outputs=2, axis=1, split=[1, 5])
    assert [o.shape for o in outs] == [(2, 1), (2, 5)]


# ----------------------------------------------------------------------------- Reshape

@SETTINGS
@given(seed=seeds, shape=shapes, data=st.data(), dtype=dtypes,
       how=st.sampled_from(["arg", "int64", "int32"]))
def test_reshape_matches_torch(seed, shape, data, dtype, how):
    x = _data(seed, shape, dtype)
    # a new shape: the prime factors of the size, grouped at random, one maybe -1
    factors = [p for d in shape for p in _factors(d)]
    perm = data.draw(st.permutations(factors), label="perm")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(perm) - 1, 1))), label="cuts"))
    groups, prev = [], 0
    for c in cuts + [len(perm)]:
        groups.append(int(np.prod(perm[prev:c], dtype=np.int64)))
        prev = c
    target = list(groups)
    new = list(groups)
    if data.draw(st.booleans(), label="minus_one"):
        new[data.draw(st.integers(0, len(new) - 1), label="at")] = -1
    if how == "arg":
        y, old = run("Reshape", [x], 2, shape=new)
        assert old.dtype == np.int64
    else:
        y, old = run("Reshape", [x, np.asarray(new, dtype=how)], 2)
        assert old.dtype == np.dtype(how)
    _same(y, torch.from_numpy(x).reshape(target))
    np.testing.assert_array_equal(old, shape)


def _factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def test_reshape_zero_copies_input_dim():
    x = _data(0, (2, 3, 4))
    y, old = run("Reshape", [x], 2, shape=[0, -1])
    _same(y, x.reshape(2, 12))
    _same(old, np.array([2, 3, 4], np.int64))
    y, _ = run("Reshape", [x], 2, shape=[4, 0, 2])          # 0 at index 1 copies 3
    assert y.shape == (4, 3, 2)


def test_reshape_empty_input():
    x = np.zeros((0, 3), np.float32)
    y, _ = run("Reshape", [x], 2, shape=[-1, 3])
    assert y.shape == (0, 3)
    y, _ = run("Reshape", [x], 2, shape=[0, -1])            # 0 not copied, -1 -> 0
    assert y.shape == (0, 0)


def test_reshape_in_place():
    x = _data(1, (2, 6))
    y, old = run("Reshape", [x], ["x", "old"], input_names=["x"], shape=[3, 4])
    _same(y, x.reshape(3, 4))


def test_reshape_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeError) as err:
        run("Reshape", [x], 2, shape=[4, 2])
    _names_op(err, "Reshape")
    assert "[2, 3]" in str(err.value) and "[4, 2]" in str(err.value)
    with pytest.raises(ShapeError) as err:
        run("Reshape", [x], 2, shape=[4, -1])
    _names_op(err, "Reshape")
    with pytest.raises(ShapeError) as err:
        run("Reshape", [x, np.array([5], np.int64)], 2)
    _names_op(err, "Reshape")
    for args in (dict(shape=[-1, -1]), dict(shape=[-2, -3]), {}):
        with pytest.raises(ArgumentError) as err:
            run("Reshape", [x], 2, **args)
        _names_op(err, "Reshape")
    with pytest.raises(ArgumentError) as err:
        run("Reshape", [x, np.array([6], np.int64)], 2, shape=[6])
    _names_op(err, "Reshape")
    with pytest.raises(ShapeError) as err:
        run("Reshape", [x, np.array([6.0])], 2)
    _names_op(err, "Reshape")
    with pytest.raises(ArgumentError) as err:               # old_shape output is required
        run("Reshape", [x], 1, shape=[6])
    _names_op(err, "Reshape")


def test_reshape_infer():
    y, old = infer("Reshape", [TensorType((2, 3)), TensorType((2,), np.int32)], outputs=2)
    assert y.shape is None and old.shape == (2,) and old.dtype == np.int32
    y, old = infer("Reshape", [TensorType(None)], outputs=2, shape=[-1])
    assert y.shape is None and old.shape is None
    y, old = infer("Reshape", [TensorType((2, 3, 4))], outputs=2, shape=[0, -1])
    assert y.shape == (2, 12) and old.shape == (3,) and old.dtype == np.int64


# ----------------------------------------------------------------------------- Flatten

@SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), data=st.data())
def test_flatten_matches_torch(seed, shape, data):
    x = _data(seed, shape)
    axis = data.draw(st.integers(0, len(shape)), label="axis")
    (y,) = run("Flatten", [x], axis=axis)
    t = torch.from_numpy(x)
    outer = torch.flatten(t[(None,) + (slice(None),) * len(shape)], 0, axis).shape[0]
    ref = t.reshape(outer, t.numel() // outer if outer else int(np.prod(shape[axis:])))
    _same(y, ref)
    (v,) = run("FlattenToVec", [x])
    _same(v, torch.flatten(t))


def test_flatten_default_axis_and_errors():
    x = _data(0, (2, 3, 4))
    (y,) = run("Flatten", [x])
    assert y.shape == (2, 12)
    for axis in (4, -1):
        with pytest.raises(ArgumentError) as err:
            run("Flatten", [x], axis=axis)
        _names_op(err, "Flatten")
    with pytest.raises(ShapeError) as err:
        run("FlattenToVec", [np.array(1.0, np.float32)])
    _names_op(err, "FlattenToVec")
    with pytest.raises(ArgumentError) as err:
        run("Flatten", [x], ["x"], input_names=["x"])
    _names_op(err, "Flatten")


# ----------------------------------------------------------------------------- Transpose

@SETTINGS
@given(seed=seeds, shape=shapes, data=st.data(), dtype=dtypes, default=st.booleans())
def test_transpose_matches_torch_permute(seed, shape, data, dtype, default):
    x = _data(seed, shape, dtype)
    if default:
        (y,) = run("Transpose", [x])
        axes = list(range(len(shape)))[::-1]
    else:
        axes = data.draw(st.permutations(range(len(shape))), label="axes")
        (y,) = run("Transpose", [x], axes=axes)
    _same(y, torch.from_numpy(x).permute(*axes).contiguous())
    assert y.flags.c_contiguous


def test_transpose_errors():
    x = np.zeros((2, 3, 4), np.float32)
    for axes in ([0, 1], [0, 1, 1], [0, 1, 3], [-1, 0, 1]):
        with pytest.raises(ArgumentError) as err:
            run("Transpose", [x], axes=axes)
        _names_op(err, "Transpose")
    with pytest.raises(ShapeError) as err:                  # Caffe2: float/double/int/int64
        run("Transpose", [x.astype(bool)])
    _names_op(err, "Transpose")


# ----------------------------------------------------------------------------- Squeeze / ExpandDims

@SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(1, 3), min_size=1, max_size=5), data=st.data())
def test_squeeze_and_expand_dims_match_torch(seed, shape, data):
    x = _data(seed, shape)
    ones = [i for i, d in enumerate(shape) if d == 1]
    if ones:
        dims = data.draw(st.lists(st.sampled_from(ones), min_size=1), label="dims")
        (y,) = run("Squeeze", [x], dims=dims)
        t = torch.from_numpy(x)
        for d in sorted(set(dims), reverse=True):
            t = t.squeeze(d)
        _same(y, t)
    new = data.draw(st.lists(st.integers(0, len(shape) + 2), min_size=1, max_size=3),
                    label="new")
    uniq = sorted(set(new))
    if uniq[-1] < len(shape) + len(uniq):
        (z,) = run("ExpandDims", [x], dims=new)
        t = torch.from_numpy(x)
        for d in uniq:                                      # indices as seen in the output
            t = t.unsqueeze(d)
        _same(z, t)
        (back,) = run("Squeeze", [z], dims=new)             # exact inverse
        _same(back, x)
    else:
        with pytest.raises(ShapeError):
            run("ExpandDims", [x], dims=new)


def test_squeeze_expand_dims_in_place_and_errors():
    x = _data(0, (2, 1, 3))
    (y,) = run("Squeeze", [x], ["x"], input_names=["x"], dims=[1])
    assert y.shape == (2, 3)
    (y,) = run("ExpandDims", [x], ["x"], input_names=["x"], dims=[0, 4])
    assert y.shape == (1, 2, 1, 3, 1)
    with pytest.raises(ShapeError) as err:                  # dim 0 is 2, not 1
        run("Squeeze", [x], dims=[0])
    _names_op(err, "Squeeze")
    assert "[2, 1, 3]" in str(err.value)
    with pytest.raises(ShapeError) as err:
        run("Squeeze", [x], dims=[3])
    _names_op(err, "Squeeze")
    for op_type in ("Squeeze", "ExpandDims"):
        for args in ({}, dict(dims=[]), dict(dims=[-1])):
            with pytest.raises(ArgumentError) as err:
                run(op_type, [x], **args)
            _names_op(err, op_type)
    with pytest.raises(ShapeError) as err:
        run("ExpandDims", [x], dims=[5])
    _names_op(err, "ExpandDims")


# ----------------------------------------------------------------------------- Slice

def _caffe2_index(i, d):
    """Caffe2 counts a negative index from one past the end: -1 is d, -2 is d - 1."""
    return min(i if i >= 0 else i + (d + 1), d)


@SETTINGS
@given(seed=seeds, shape=shapes, data=st.data(), dtype=dtypes,
       how=st.sampled_from(["arg", "int32", "int64"]))
def test_slice_matches_torch_narrow(seed, shape, data, dtype, how):
    x = _data(seed, shape, dtype)
    nd = len(shape)
    k = data.draw(st.integers(1, nd), label="len")          # how many dims starts/ends cover
    cut = data.draw(st.integers(0, k - 1), label="cut")     # the one dim actually sliced
    d = shape[cut]
    starts, ends = [0] * k, [-1] * k
    starts[cut] = data.draw(st.integers(-d - 1, d + 2), label="start")
    s = _caffe2_index(starts[cut], d)
    ends[cut] = data.draw(st.sampled_from([e for e in range(-d - 1, d + 3)
                                           if _caffe2_index(e, d) >= s]), label="end")
    e = _caffe2_index(ends[cut], d)
    if how == "arg":
        (y,) = run("Slice", [x], starts=starts, ends=ends)
    else:
        (y,) = run("Slice", [x, np.asarray(starts, how), np.asarray(ends, how)])
    _same(y, torch.from_numpy(x).narrow(cut, s, e - s))


def test_slice_negative_indices_pinned():
    x = np.arange(5, dtype=np.int64)
    _same(run("Slice", [x], starts=[-4], ends=[-1])[0], [2, 3, 4])   # -1: through the end
    _same(run("Slice", [x], starts=[-3], ends=[-1])[0], [3, 4])      # 5 + 1 - 3 (numpy: 2)
    _same(run("Slice", [x], starts=[1], ends=[-2])[0], [1, 2, 3])    # -2: drops the last
    _same(run("Slice", [x], starts=[0], ends=[100])[0], x)           # clamped
    _same(run("Slice", [x], starts=[-1], ends=[-1])[0], x[:0])
    m = np.arange(8).reshape(2, 4)                                   # Caffe2's doc example
    _same(run("Slice", [m], starts=[0, 1], ends=[-1, 3])[0], [[1, 2], [5, 6]])


def test_slice_errors():
    x = np.zeros((3, 4), np.float32)
    for args in (dict(starts=[2], ends=[1]),               # end before start
                 dict(starts=[-5], ends=[-1]),             # -5 + 4 < 0
                 dict(starts=[0, 0, 0], ends=[-1, -1, -1]),
                 dict(starts=[0], ends=[-1, -1]),
                 dict(starts=[1, 1], ends=[-1, -1]),       # two dims cut: Caffe2 refuses
                 dict(starts=[0])):
        with pytest.raises(ArgumentError) as err:
            run("Slice", [x], **args)
        _names_op(err, "Slice")
    with pytest.raises(ShapeError) as err:
        run("Slice", [x, np.array([2], np.int32), np.array([1], np.int32)])
    _names_op(err, "Slice")
    with pytest.raises(ShapeError) as err:
        run("Slice", [x, np.array([0], np.int32), np.array([1], np.int64)])
    _names_op(err, "Slice")
    with pytest.raises(ArgumentError) as err:
        run("Slice", [x, np.array([0], np.int32)])
    _names_op(err, "Slice")
    with pytest.raises(ArgumentError) as err:
        run("Slice", [x, np.array([0], np.int32), np.array([1], np.int32)], starts=[0], ends=[1])
    _names_op(err, "Slice")
    with pytest.raises(ArgumentError) as err:              # no in-place form
        run("Slice", [x], ["x"], input_names=["x"], starts=[0], ends=[1])
    _names_op(err, "Slice")


def test_slice_infer():
    (t,) = infer("Slice", [TensorType((3, 4)), TensorType((1,), np.int64),
                           TensorType((1,), np.int64)])
    assert t.shape is None
    (t,) = infer("Slice", [TensorType((3, 4), np.int32)], starts=[0, 1], ends=[-1, 3])
    assert t.shape == (3, 2) and t.dtype == np.int32


# ----------------------------------------------------------------------------- Shape

@SETTINGS
@given(seed=seeds, shape=st.lists(st.integers(0, 4), max_size=4), data=st.data(), dtype=dtypes)
def test_shape_matches_torch(seed, shape, data, dtype):
    x = _data(seed, shape, dtype)
    (s,) = run("Shape", [x])
    _same(s, np.asarray(torch.from_numpy(x).shape, np.int64).reshape(len(shape)))
    if shape:
        axes = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1), label="axes")
        (s,) = run("Shape", [x], axes=axes)
        _same(s, np.asarray([x.shape[a] for a in axes], np.int64))


def test_shape_errors_and_infer():
    with pytest.raises(ArgumentError) as err:
        run("Shape", [np.zeros((2, 3))], axes=[2])
    _names_op(err, "Shape")
    with pytest.raises(ArgumentError) as err:
        run("Shape", [np.zeros((2, 3))], axes=[-1])
    _names_op(err, "Shape")
    (t,) = infer("Shape", [TensorType(None)])
    assert t.shape is None and t.dtype == np.int64
    (t,) = infer("Shape", [TensorType(None)], axes=[0, 0, 1])
    assert t.shape == (3,)


@pytest.mark.parametrize("op_type,args", [
    ("Flatten", {}), ("FlattenToVec", {}), ("Transpose", {}), ("Transpose", {"axes": [1, 0]}),
    ("Squeeze", {"dims": [0]}), ("ExpandDims", {"dims": [0]}),
    ("Slice", {"starts": [0], "ends": [-1]}),
])
def test_unknown_input_shape_gives_unknown_output(op_type, args):
    (t,) = infer(op_type, [TensorType(None, np.int64)], **args)
    assert t.shape is None and t.dtype == np.int64


@pytest.mark.parametrize("op_type,args,outputs", [
    ("Transpose", {}, 1), ("Slice", {"starts": [0], "ends": [-1]}, 1),
    ("Reshape", {"shape": [-1]}, 2), ("Flatten", {"axis": 0}, 1), ("FlattenToVec", {}, 1),
    ("ExpandDims", {"dims": [0]}, 1), ("Split", {"axis": 0}, 1), ("Concat", {"axis": 0}, 2),
])
def test_outputs_never_alias_the_input(op_type, args, outputs):
    x = np.arange(4, dtype=np.float32)
    y = run(op_type, [x], outputs, **args)[0]
    _same(y.reshape(-1), x)
    assert not np.shares_memory(y, x)
