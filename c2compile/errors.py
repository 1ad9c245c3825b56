"""The errors a user can cause, each naming the op (index, type, name) and blob involved.

Every error c2compile raises for bad input derives from `C2Error`. Errors about one op
carry its position in the net so that a message always points at the offending line of
the NetDef, as Caffe2's `[enforce fail ...] Error from operator:` did.
"""
from __future__ import annotations


class C2Error(RuntimeError):
    """Base of every c2compile error caused by user input."""


class ProtoError(C2Error):
    """A NetDef/OperatorDef/TensorProto could not be parsed."""


class NetError(C2Error):
    """A net name that is unknown, or already taken."""


class PlanError(NetError):
    """A plan that cannot run as written: a step naming a net the plan lacks, a step with
    both nets and substeps, a bad should_stop_blob, conflicting iteration settings, ...

    `step`, `net` and `blob` name what is at fault (None when not involved)."""

    def __init__(self, message: str, *, step: str | None = None, net: str | None = None,
                 blob: str | None = None):
        super().__init__(message)
        self.step, self.net, self.blob = step, net, blob


class OpError(C2Error):
    """Something is wrong with one operator: its type, arguments, inputs or shapes.

    `where` is "op #index (Type 'name')"; the message follows it.
    """

    def __init__(self, message: str, *, index: int | None = None, op_type: str = "",
                 name: str = "", blob: str | None = None, net: str | None = None):
        self.message, self.index, self.op_type, self.name = message, index, op_type, name
        self.blob, self.net = blob, net
        super().__init__(str(self))

    @property
    def where(self) -> str:
        idx = "" if self.index is None else f"#{self.index} "
        name = f" '{self.name}'" if self.name else ""
        net = f" in net '{self.net}'" if self.net else ""
        return f"op {idx}({self.op_type}{name}){net}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.op_type else self.message


class BlobError(OpError, KeyError):
    """A blob that is needed is not in the workspace (op fields set when an op needed it)."""


class ArgumentError(OpError):
    """An argument that the op does not know, or of the wrong kind or value."""


class ShapeError(OpError):
    """Input shapes or dtypes that the op cannot take."""


class UnsupportedError(OpError):
    """A valid Caffe2 construct that c2compile does not implement (yet)."""


class GradientError(OpError):
    """No gradient can be built through this op (no rule, or a gradient it needs is missing)."""


class NonFiniteError(OpError):
    """An op's output went NaN or infinite (reported by RunNet(..., check_finite=True))."""


class DBError(OpError):
    """A DB that is missing, truncated or malformed, or a key that is not in it.

    The message names the file (and the key); raised inside an op (Load, CreateDB, ...) it
    names that op too.
    """


class UserFunctionError(Exception):
    """Carries an exception raised by user code (a Python op's function) out of a reference.

    The executor re-raises the original exception, unchanged in type as in Caffe2, with a
    note naming the op it came from.
    """

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original

