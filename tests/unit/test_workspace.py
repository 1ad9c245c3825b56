"""workspace API: Caffe2's behaviour, errors, and that failures leave blobs untouched."""
import numpy as np
import pytest

from c2compile import core, workspace
from c2compile.errors import ArgumentError, BlobError, NetError, ProtoError, UnsupportedError


def test_feed_fetch_copy_semantics():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert workspace.FeedBlob("x", x)
    x[0, 0] = 100  # the workspace has its own copy
    got = workspace.FetchBlob("x")
    assert got[0, 0] == 0
    got[0, 1] = 100  # and so has the caller
    assert workspace.FetchBlob("x")[0, 1] == 1
    assert workspace.HasBlob("x") and workspace.Blobs() == ["x"]
    assert workspace.FetchBlobs(["x"])[0].shape == (2, 3)
    workspace.blobs["y"] = np.ones(2)
    assert "y" in workspace.blobs and workspace.blobs["y"].tolist() == [1, 1]


def test_fed_strings_come_back_as_bytes():
    # Caffe2 stores strings as std::string: real Caffe2 1.10.2 fetches array(['0', 'ab'])
    # (<U2), array([b'0', b'ab']) (|S2) and object arrays of str or bytes alike as
    # array([b'0', b'ab'], dtype=object); Caffe2's cast_op_test relies on it.
    want = [b"0", b"ab"]
    for fed in (np.array(["0", "ab"]), np.array([b"0", b"ab"]),
                np.array(["0", "ab"], dtype=object), np.array([b"0", "ab"], dtype=object)):
        workspace.FeedBlob("s", fed)
        got = workspace.FetchBlob("s")
        assert got.dtype == object and got.tolist() == want, (fed, got)
    workspace.FeedBlob("s", np.array([["é"]]))
    assert workspace.FetchBlob("s").tolist() == [["é".encode("utf-8")]]
    workspace.FeedBlob("o", np.array([1, None], dtype=object))  # not strings: as fed
    assert workspace.FetchBlob("o").tolist() == [1, None]


def test_switch_and_reset():
    workspace.FeedBlob("a", np.zeros(1))
    with pytest.raises(NetError):
        workspace.SwitchWorkspace("nope")
    workspace.SwitchWorkspace("other", True)
    assert workspace.CurrentWorkspace() == "other" and workspace.Blobs() == []
    workspace.SwitchWorkspace("default")
    assert workspace.Blobs() == ["a"]
    workspace.ResetWorkspace()
    assert workspace.Blobs() == []


def test_fetch_missing_blob():
    with pytest.raises(BlobError, match="'nope'"):
        workspace.FetchBlob("nope")


def test_create_and_run_net():
    net = core.Net("n")
    net.ConstantFill([], "c", shape=[2], value=3.0)
    net.Relu("c", "r")
    workspace.CreateNet(net)
    with pytest.raises(NetError, match="already exists"):
        workspace.CreateNet(net)
    workspace.CreateNet(net, overwrite=True)
    assert workspace.RunNet(net.Name(), num_iter=2)
    assert workspace.FetchBlob("r").tolist() == [3, 3]
    with pytest.raises(NetError, match="'unknown'"):
        workspace.RunNet("unknown")


def test_create_net_checks_inputs_exist():
    net = core.Net("needs_x")
    net.Relu("X", "Y")
    with pytest.raises(BlobError) as e:
        workspace.CreateNet(net)
    assert "op #0 (Relu" in str(e.value) and "'X'" in str(e.value)
    workspace.FeedBlob("X", np.ones(3, np.float32))
    workspace.CreateNet(net)
    workspace.RunNet(net)


def test_failing_run_leaves_workspace_unchanged():
    workspace.FeedBlob("X", np.ones((2, 3), np.float32))
    workspace.FeedBlob("W", np.ones((4, 5), np.float32))  # wrong K for FC
    workspace.FeedBlob("b", np.ones(4, np.float32))
    net = core.Net("fails")
    net.Relu("X", "X")  # in place: would overwrite X before the failure
    net.FC(["X", "W", "b"], "Y")
    before = {n: workspace.FetchBlob(n) for n in workspace.Blobs()}
    with pytest.raises(Exception) as e:
        workspace.RunNetOnce(net)
    assert "op #1 (FC" in str(e.value)
    assert workspace.Blobs() == sorted(before)
    for n, v in before.items():
        np.testing.assert_array_equal(workspace.FetchBlob(n), v)


def test_unknown_op_and_argument_errors():
    with pytest.raises(UnsupportedError, match="Rleu.*Relu"):
        workspace.RunOperatorOnce(core.CreateOperator("Rleu", ["X"], ["Y"]))
    workspace.FeedBlob("X", np.ones(3, np.float32))
    with pytest.raises(ArgumentError, match="alhpa"):
        workspace.RunOperatorOnce(core.CreateOperator("LeakyRelu", ["X"], ["Y"], alhpa=0.2))
    with pytest.raises(ArgumentError, match="'alpha'"):
        workspace.RunOperatorOnce(core.CreateOperator("LeakyRelu", ["X"], ["Y"], alpha="x"))
    with pytest.raises(BlobError, match="'nope'"):
        workspace.RunOperatorOnce(core.CreateOperator("Relu", ["nope"], ["Y"]))
    assert workspace.Blobs() == ["X"]


def test_truncated_protobuf():
    net = core.Net("n")
    net.Relu("X", "Y")
    data = net.Proto().SerializeToString()
    with pytest.raises(ProtoError, match="predict_net"):
        workspace.Predictor(b"", data[:-2])


def test_predictor_runs_in_its_own_workspace():
    init = core.Net("init")
    init.GivenTensorFill([], "W", shape=[2, 3], values=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    init.ConstantFill([], "b", shape=[2], value=0.5)
    pred = core.Net("pred")
    pred.AddExternalInput("data", "W", "b")
    pred.FC(["data", "W", "b"], "out")
    pred.AddExternalOutput("out")
    p = workspace.Predictor(init.Proto().SerializeToString(), pred.Proto().SerializeToString())
    x = np.ones((1, 3), np.float32)
    (y,) = p.run([x])
    np.testing.assert_allclose(y, [[6.5, 15.5]])
    (y2,) = p.run({"data": x})
    np.testing.assert_array_equal(y, y2)
    assert workspace.Blobs() == []


def test_python_op_sees_this_runs_writes_and_errors_pass_through():
    def double(inputs, outputs, ws):
        # "a" was written by the previous op of this same run, not yet committed.
        outputs[0].feed(ws.blobs["a"].fetch() * 2)

    net = core.Net("py")
    net.ConstantFill([], "a", shape=[2], value=3.0)
    net.Python(double, pass_workspace=True)([], ["b"], some_user_arg=7)
    workspace.RunNetOnce(net)
    assert workspace.FetchBlob("b").tolist() == [6, 6]

    def bad(inputs, outputs):
        raise ValueError("user bug")

    net = core.Net("py_bad")
    net.ConstantFill([], "c", shape=[1], value=1.0)
    net.Python(bad)([], ["d"])
    with pytest.raises(ValueError, match="user bug") as e:  # the user's own exception type
        workspace.RunNetOnce(net)
    assert any("op #1 (Python" in n for n in e.value.__notes__)
    assert not workspace.HasBlob("c")  # the failed run committed nothing


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_check_finite_names_the_first_op_that_went_non_finite(backend):
    from c2compile import config
    from c2compile.errors import NonFiniteError
    net = core.Net("nan")
    net.Relu("x", "r")
    net.Log("r", "l")       # log(0) = -inf: the first non-finite output
    net.Scale("l", "s", scale=0.0)  # -inf * 0 = NaN downstream
    net.Relu("w", "w")      # in place: must be put back
    workspace.FeedBlob("x", np.array([1.0, -1.0], np.float32))
    workspace.FeedBlob("w", np.array([-2.0], np.float32))
    with config.patch(backend=backend):
        workspace.CreateNet(net)
    workspace.RunNet(net.Name())  # without the option: runs, NaNs and all
    assert np.isnan(workspace.FetchBlob("s")).any()
    workspace.FeedBlob("w", np.array([-2.0], np.float32))
    workspace.FeedBlob("s", np.array([7.0], np.float32))
    with pytest.raises(NonFiniteError, match="output 'l' went non-finite") as e:
        workspace.RunNet(net.Name(), check_finite=True)
    assert e.value.op_type == "Log" and e.value.index == 1 and e.value.blob == "l"
    assert "all its inputs were finite" in str(e.value)
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [-2.0])
    np.testing.assert_array_equal(workspace.FetchBlob("s"), [7.0])
    workspace.FeedBlob("x", np.array([1.0, 2.0], np.float32))
    assert workspace.RunNet(net.Name(), check_finite=True)
    assert workspace.FetchBlob("w")[0] == 0.0


def test_predictor_init_net_device_option_seeds_its_fills():
    def init_with_seed(seed):
        init = core.Net("pinit")
        init.GaussianFill([], "w", shape=[4])
        init.Proto().device_option.random_seed = seed
        return init.Proto()
    predict = core.Net("ppred")
    predict.Relu("w", "y")
    predict.AddExternalOutput("y")
    a = workspace.Predictor(init_with_seed(5), predict.Proto()).run([])[0]
    b = workspace.Predictor(init_with_seed(5), predict.Proto()).run([])[0]
    c = workspace.Predictor(init_with_seed(6), predict.Proto()).run([])[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
