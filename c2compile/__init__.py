"""c2compile: an ahead-of-time compiler and drop-in runtime for Caffe2 nets.

`from c2compile import core, workspace` replaces `from caffe2.python import core, workspace`.
"""
import os as _os

__version__ = "0.1.0"

# In a source checkout, passes/, codegen/ and runtime/ sit beside this folder and are
# installed as c2compile.passes etc. (pyproject's package-dir). Let the checkout import them
# the same way, so tests run from the repo root see one layout whatever is installed.
_top = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "runtime")) and \
        _os.path.isfile(_os.path.join(_top, "runtime", "__init__.py")):
    __path__.append(_top)  # noqa: F821 (package __path__)


def compile(predict_net, init_net=None, inputs=None, backend: str = "cpu"):
    """Compile a predict net ahead of time; see `c2compile.aot`."""
    from c2compile import aot
    return aot.compile(predict_net, init_net, inputs, backend)


def load(directory):
    """Load a net saved with `CompiledNet.save(directory)`; see `c2compile.aot`."""
    from c2compile import aot
    return aot.load(directory)
