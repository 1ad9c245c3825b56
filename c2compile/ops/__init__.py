"""Op definitions: one `OpDef` per Caffe2 op type, grouped by family (see schema.py)."""
from c2compile.ops.schema import (  # noqa: F401
    INF, REQUIRED, Arg, BoundOp, OpDef, TensorType, all_ops, bind, get_op, has_op, op)

# Importing a family module registers its ops.
from c2compile.ops import (  # noqa: F401,E402
    db, elementwise, fill, linear, load_save, python, reduction, shape, spatial, normalization,
    training, utility)
