"""Every op the foundation issue lists has a definition, a shape rule, a reference and a test."""
import pathlib
import re

import pytest

from c2compile.ops import all_ops

REQUIRED = """
ConstantFill GaussianFill UniformFill UniformIntFill XavierFill MSRAFill GivenTensorFill
GivenTensorIntFill GivenTensorInt64Fill GivenTensorDoubleFill GivenTensorBoolFill
Relu Sigmoid Tanh Exp Log Sqrt Abs Negative Pow Clip LeakyRelu Elu Softplus Scale Cast Copy
StopGradient Add Sub Mul Div Sum Max Min
FC FCTransposed MatMul BatchMatMul
Conv ConvTranspose MaxPool AveragePool LRN SpatialBN Softmax
Concat Split Reshape Flatten FlattenToVec Transpose Squeeze ExpandDims Slice Shape
ReduceSum ReduceMean SumElements AveragedLoss SquaredL2Distance LabelCrossEntropy CrossEntropy
SoftmaxWithLoss Accuracy ArgMax
Iter LearningRate WeightedSum Dropout Print Summarize Python
""".split()

TESTS = pathlib.Path(__file__).resolve().parents[1]
_test_text = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))


@pytest.mark.parametrize("op_type", REQUIRED)
def test_op_is_defined_and_tested(op_type):
    ops = all_ops()
    assert op_type in ops, f"{op_type} has no definition"
    d = ops[op_type]
    assert callable(d.reference) and callable(d.infer)
    # Named as a string (CreateOperator / run) or used through Net sugar (net.Python(...)).
    assert re.search(rf"""["']{op_type}["']|\.{op_type}\(""", _test_text), \
        f"no test mentions '{op_type}'"
