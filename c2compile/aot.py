"""Ahead-of-time compilation: `c2compile.compile(predict_net, init_net, inputs)`.

A `CompiledNet` is a Predictor (its own workspace: the init net's parameters, the predict
net created once) whose compiled segments are specialised up front for the declared input
shapes, so the first `run` costs no compile. `save(dir)` writes a self-contained artifact:

    dir/manifest.json     inputs, outputs, and one entry per compiled variant
    dir/predict_net.pb    the predict net as given
    dir/init_net.pb       the parameters' current values as GivenTensor*Fill ops
    dir/variants/*.pyx    generated source, and the .so built from it with portable flags

`load(dir)` needs no compiler when the saved modules match this c2compile and Python: it
re-plans each variant, checks that the source it would generate has the saved hash, and
loads the saved module; otherwise it rebuilds from the source (warning once).
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import warnings

import numpy as np

from c2compile.errors import BlobError, C2Error
from c2compile.ops.schema import TensorType
from c2compile.runtime.compiled import CythonSegment
from c2compile.workspace import Predictor, _bytes_to_net

FORMAT = 1
_FILLS = {np.dtype(np.float32): "GivenTensorFill", np.dtype(np.float64): "GivenTensorDoubleFill",
          np.dtype(np.int32): "GivenTensorIntFill", np.dtype(np.int64): "GivenTensorInt64Fill",
          np.dtype(np.bool_): "GivenTensorBoolFill", np.dtype(np.object_): "GivenTensorStringFill"}


def _parse_inputs(inputs) -> dict[str, TensorType]:
    """{name: shape} or {name: (shape, dtype)} -> {name: TensorType}."""
    out = {}
    for name, spec in (inputs or {}).items():
        if isinstance(spec, TensorType):
            out[name] = spec
        elif len(spec) == 2 and not isinstance(spec[1], (int, np.integer)):
            out[name] = TensorType(tuple(spec[0]), np.dtype(spec[1]))
        else:
            out[name] = TensorType(tuple(spec), np.float32)
    return out


class CompiledNet(Predictor):
    """A predict net compiled ahead of time for given input shapes (see module docstring)."""

    def __init__(self, predict_net, init_net=None, inputs=None, *, specialise: bool = True):
        super().__init__(init_net if init_net is not None else b"", predict_net)
        self.input_types = _parse_inputs(inputs)
        unknown = sorted(set(self.input_types) - set(self.input_names))
        if unknown:
            raise BlobError(f"compile: {unknown} are not inputs of the predict net; its "
                            f"inputs are {self.input_names}")
        if specialise:
            self._specialise_all()

    def _segment_types(self):
        """(segment, its input types or None) in order, by walking the shape rules."""
        known = {n: TensorType(v.shape, v.dtype) for n, v in self._ws.blobs.items()
                 if isinstance(v, np.ndarray)}
        known.update(self.input_types)
        for seg in self.segments:
            types = None
            if isinstance(seg, CythonSegment):
                types = [known.get(n) for n in seg.inputs]
                if any(t is None or t.shape is None for t in types):
                    types = None
            yield seg, types
            for op in seg.ops:
                ins = [known.get(n, TensorType(None, None)) for n in op.inputs]
                for name, t in zip(op.outputs, op.opdef.infer(op, *ins)):
                    known[name] = t

    def _specialise_all(self) -> None:
        for seg, types in self._segment_types():
            if types is not None:
                seg.specialise(types)

    # ------------------------------------------------------------------ save / load
    def save(self, directory) -> pathlib.Path:
        from c2compile.codegen.build import build_to
        d = pathlib.Path(directory)
        (d / "variants").mkdir(parents=True, exist_ok=True)
        (d / "predict_net.pb").write_bytes(self._net.netdef.SerializeToString())
        (d / "init_net.pb").write_bytes(self.params_net().SerializeToString())
        variants = []
        for i, seg in enumerate(self.segments):
            if not isinstance(seg, CythonSegment):
                continue
            for variant in seg.variants.values():
                if not hasattr(variant, "source"):
                    continue  # a reference fallback: nothing to save
                digest = hashlib.sha256(variant.source.encode()).hexdigest()
                stem = f"seg{i}_{digest[:16]}"
                (d / "variants" / f"{stem}.pyx").write_text(variant.source)
                so = build_to(variant.source, d / "variants", portable=True)
                variants.append(dict(segment=i, inputs=[[list(t.shape), t.dtype.str]
                                                        for t in variant.plan.input_types],
                                     sha256=digest, pyx=f"variants/{stem}.pyx",
                                     so=str(so.relative_to(d))))
        from c2compile import __version__
        manifest = dict(format=FORMAT, c2compile=__version__,
                        inputs={n: [list(t.shape), t.dtype.str] for n, t in self.input_types.items()},
                        outputs=self.output_names, variants=variants)
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return d

    def params_net(self):
        """The parameters' current values as an init net of GivenTensor*Fill ops."""
        return given_fill_net({name: self._ws.blobs[name] for name in self._params})


def given_fill_net(params, name: str = "init_net"):
    """An init net of GivenTensor*Fill ops (one per blob, sorted by name) that recreates
    `params` {name: array}: the form of Caffe2's model-zoo init_net.pb files."""
    from c2compile import core
    net = core.Net(name)
    for blob in sorted(params):
        value = params[blob]
        if not isinstance(value, np.ndarray) or value.dtype not in _FILLS:
            raise C2Error(f"save: parameter '{blob}' ({type(value).__name__} "
                          f"{getattr(value, 'dtype', '')}) cannot be written as a "
                          "GivenTensor*Fill")
        values = value.reshape(-1).tolist()
        getattr(net, _FILLS[value.dtype])([], [blob], shape=list(value.shape), values=values)
    proto = net.Proto()
    proto.name = name  # core.Net would number a second "init_net" of this process
    return proto


def compile(predict_net, init_net=None, inputs=None, backend: str = "cpu") -> CompiledNet:
    """Compile `predict_net` (NetDef, core.Net or bytes) for `inputs` {name: shape or
    (shape, dtype)}; `init_net` gives the parameters."""
    from c2compile import config
    if backend not in ("cpu", "reference"):
        raise C2Error(f"compile: backend {backend!r} is not available (cpu, reference)")
    with config.patch(backend=backend):
        return CompiledNet(_bytes_to_net(predict_net, "predict_net"),
                           None if init_net is None else _bytes_to_net(init_net, "init_net"),
                           inputs)


def load(directory) -> CompiledNet:
    """A CompiledNet saved with `.save(directory)`."""
    from c2compile.codegen.build import build_module, load_so
    from c2compile.codegen.cython.render import render
    d = pathlib.Path(directory)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise C2Error(f"load: {d} is not a saved c2compile net ({e})") from None
    if manifest.get("format") != FORMAT:
        raise C2Error(f"load: {d}/manifest.json has format {manifest.get('format')}, "
                      f"this c2compile reads format {FORMAT}")
    inputs = {n: (tuple(s), np.dtype(t)) for n, (s, t) in manifest["inputs"].items()}
    net = CompiledNet((d / "predict_net.pb").read_bytes(), (d / "init_net.pb").read_bytes(),
                      inputs, specialise=False)
    segments = net.segments
    for v in manifest["variants"]:
        seg = segments[v["segment"]]
        types = [TensorType(tuple(s), np.dtype(t)) for s, t in v["inputs"]]
        source = render(seg.plan(types))
        module = None
        if hashlib.sha256(source.encode()).hexdigest() == v["sha256"]:
            so = d / v["so"]
            try:
                module = load_so(so, so.name.split(".")[0])
            except C2Error as e:
                warnings.warn(f"load: {so} does not load here ({e}); rebuilding it")
        else:
            warnings.warn(f"load: {d / v['pyx']} was generated by another c2compile "
                          f"({manifest.get('c2compile')}); rebuilding it")
        seg.specialise(types, module=module or build_module(source, name_hint=seg.name))
    net._specialise_all()  # anything the manifest did not cover
    return net
