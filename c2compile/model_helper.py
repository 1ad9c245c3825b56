"""A model being built: Caffe2 1.10's `caffe2.python.model_helper`.

`ModelHelper` holds two nets, `param_init_net` (fills the parameters once) and `net` (the
model, run every iteration), plus the bookkeeping that `brew` helpers and `optimizer` need:
which blobs are parameters (`params`; `weights`/`biases` by tag; computed parameters such
as batch-norm statistics apart), their ParameterInfo, and after `AddGradientOperators` the
gradient of each (`param_to_grad`).

    model = ModelHelper(name="train")
    fc = brew.fc(model, "data", "fc", dim_in=4, dim_out=2)   # fc_w, fc_b in param_init_net
    loss = model.AveragedLoss(model.SquaredL2Distance([fc, "label"]), "loss")
    model.AddGradientOperators([loss])                        # param_to_grad: fc_w -> fc_w_grad
    optimizer.build_sgd(model, base_learning_rate=0.1)

`model.Relu(...)` and other op types delegate to `model.net` as in Caffe2 (with its warning
for op types outside its "known to be safe" list). Names, op order and arguments follow
Caffe2 1.10, so the NetDefs built here are the ones Caffe2 built.
"""
from __future__ import annotations

import logging
from itertools import chain

from c2compile import core, scope
from c2compile.modeling import parameter_info
from c2compile.modeling.parameter_sharing import parameter_sharing_context
from c2compile.optimizer_context import DEFAULT_OPTIM, OptimizerContext

logger = logging.getLogger(__name__)

# Caffe2's list of op types ModelHelper creates without a warning (model.<Op>(...)).
_known_working_ops = [
    "Accuracy", "Adam", "Add", "Adagrad", "SparseAdagrad", "Adadelta", "SparseAdadelta",
    "AveragedLoss", "Cast", "Checkpoint", "ConstantFill", "Copy", "CopyGPUToCPU",
    "CopyCPUToGPU", "DequeueBlobs", "EnsureCPUOutput", "ExpandDims", "Flatten",
    "FlattenToVec", "LabelCrossEntropy", "LearningRate", "MakeTwoClass", "MatMul",
    "NCCLAllreduce", "NHWC2NCHW", "PackSegments", "Print", "PRelu", "ReduceFrontSum", "Scale",
    "ScatterWeightedSum", "Sigmoid", "SortedSegmentSum", "Snapshot", "Softmax",
    "SoftmaxWithLoss", "SquaredL2Distance", "Squeeze", "StopGradient", "Summarize", "Tanh",
    "Transpose", "UnpackSegments", "WeightedSum", "YellowFin",
]


class ModelHelper:
    """A model's nets and parameters (see the module docstring).

    `param_model`: share another model's param_init_net and parameters (e.g. a test model
    next to a train model). `arg_scope`: defaults every brew helper gets (on top of
    order="NCHW", use_cudnn=True, cudnn_exhaustive_search=False). `init_params=False`:
    helpers add no fill ops (the parameters come from elsewhere, e.g. a loaded init net).
    """

    def __init__(self, name=None, init_params=True, allow_not_known_ops=True,
                 skip_sparse_optim=False, param_model=None, arg_scope=None):
        self.name = name or "model"
        self.net = core.Net(self.name)
        if param_model is not None:
            self.param_init_net = param_model.param_init_net
            self.param_to_grad = param_model.param_to_grad
            self.params = param_model.params
            self._parameters_info = param_model._parameters_info
            self._computed_params = param_model._computed_params
        else:
            self.param_init_net = core.Net(self.name + "_init")
            self.param_to_grad = {}
            self.params = []
            self._parameters_info = {}
            self._computed_params = []
        self._devices = []
        self.gradient_ops_added = False
        self.init_params = init_params
        self.allow_not_known_ops = allow_not_known_ops
        self.skip_sparse_optim = skip_sparse_optim
        self.weights = []
        self.biases = []
        self._arg_scope = {"order": "NCHW", "use_cudnn": True, "cudnn_exhaustive_search": False}
        if arg_scope is not None:
            self._arg_scope.update(arg_scope)

    @property
    def arg_scope(self) -> dict:
        return self._arg_scope

    def get_name(self) -> str:
        return self.name

    # -- parameters
    def create_param(self, param_name, shape, initializer, tags=None):
        """The parameter `param_name`, created with `initializer` unless it exists already.

        A BlobReference names the blob exactly; a string is put in the current name scope,
        after the ParameterSharing overrides. Creating an existing parameter again returns it
        (its shape must match). The parameter gets the optimizer of the current UseOptimizer
        context for its tags (else its "DEFAULT" one).
        """
        if isinstance(param_name, core.BlobReference):
            param_name = str(param_name)
        elif isinstance(param_name, str):
            param_name = parameter_sharing_context.get_parameter_name(param_name)
        else:
            raise TypeError("Unsupported type for param_name")
        if param_name in self._parameters_info:
            known = self._parameters_info[param_name]
            if known.shape != shape:
                raise AssertionError(f"parameter {param_name} exists with shape {known.shape}, "
                                     f"asked for {shape}")
            return known.blob
        info = initializer.create_param(param_name=core.BlobReference(param_name),
                                        init_net=self.param_init_net, shape=shape)
        optim_context = OptimizerContext.current()
        for tag in self._normalize_tags(tags):
            if optim_context.has_optimizer(tag):
                info.optimizer = optim_context.get_optimizer(tag)
        if not info.optimizer and optim_context.has_optimizer(DEFAULT_OPTIM):
            info.optimizer = optim_context.get_optimizer(DEFAULT_OPTIM)
        self._parameters_info[param_name] = info
        self.AddParameter(info.blob, tags)
        return info.blob

    def get_param_info(self, param):
        if not isinstance(param, core.BlobReference):
            raise AssertionError(f"Param {param} is not a BlobReference")
        return self._parameters_info.get(param, None)

    @staticmethod
    def _normalize_tags(tags) -> set:
        tags = tags or []
        return set(tags) if isinstance(tags, list) else {tags}

    def AddParameter(self, param, tags=None) -> None:
        """Register `param` (a BlobReference): a computed parameter if tagged so, else a
        trained one; WEIGHT/BIAS tags also list it in weights/biases."""
        if not isinstance(param, core.BlobReference):
            raise AssertionError(f"AddParameter takes a BlobReference, got {param!r}")
        tags = self._normalize_tags(tags)
        if parameter_info.ParameterTags.COMPUTED_PARAM in tags:
            self._computed_params.append(param)
        else:
            self.params.append(param)
        if parameter_info.ParameterTags.WEIGHT in tags:
            self.weights.append(param)
        if parameter_info.ParameterTags.BIAS in tags:
            self.biases.append(param)

    @staticmethod
    def _NormalizeNamescope(namescope):
        if namescope is None:
            return scope.CurrentNameScope()
        if namescope == "" or namescope.endswith(scope._NAMESCOPE_SEPARATOR):
            return namescope
        return namescope + scope._NAMESCOPE_SEPARATOR

    @staticmethod
    def _in_namescope(blobs, namescope):
        namescope = ModelHelper._NormalizeNamescope(namescope)
        if namescope == "":
            return blobs[:]
        return [p for p in blobs if p.GetNameScope().startswith(namescope)]

    def GetParams(self, namescope=None, top_scope=False):
        """The trained parameters under `namescope` (default: the current name scope)."""
        return self._in_namescope(self.params, namescope)

    def GetComputedParams(self, namescope=None):
        """The parameters computed from data rather than trained (batch-norm running mean
        and inverse variance) under `namescope`."""
        return self._in_namescope(self._computed_params, namescope)

    def GetAllParams(self, namescope=None):
        return self.GetParams(namescope) + self.GetComputedParams(namescope)

    def _Validate(self) -> list[str]:
        """Parameter names registered more than once (sorted)."""
        names = sorted(str(p) for p in self.params)
        return sorted({a for a, b in zip(names, names[1:]) if a == b})

    def Validate(self) -> None:
        dupes = self._Validate()
        if dupes:
            raise AssertionError(f"Duplicate params: {dupes}")

    # -- nets
    def Proto(self):
        return self.net.Proto()

    def InitProto(self):
        return self.param_init_net.Proto()

    def RunAllOnGPU(self, *args, **kwargs) -> None:
        self.param_init_net.RunAllOnGPU(*args, **kwargs)
        self.net.RunAllOnGPU(*args, **kwargs)

    def GetDevices(self):
        if not self._devices:
            raise AssertionError("Use data_parallel_model to run model on multiple GPUs.")
        return self._devices

    # -- input
    def TensorProtosDBInput(self, unused_blob_in, blob_out, batch_size, db, db_type,
                            **kwargs):
        """Read batches of `db` into `blob_out` (brew.db_input: the reader is opened in
        param_init_net); pass no input blobs, as in Caffe2."""
        from c2compile.helpers.db_input import db_input
        assert len(unused_blob_in) == 0, (
            "You cannot pass a reader to model_helper.TensorProtosDBInput; use "
            "model.net.TensorProtosDBInput to create the op.")
        return db_input(self, blob_out, batch_size, db, db_type, **kwargs)

    # -- gradients
    def AddGradientOperators(self, *args, **kwargs):
        """`net.AddGradientOperators(...)`, once; records each parameter's gradient in
        `param_to_grad` (and its ParameterInfo). Returns the gradient map."""
        if self.gradient_ops_added:
            raise RuntimeError("You cannot run AddGradientOperators twice.")
        self.Validate()
        self.gradient_ops_added = True
        self.grad_map = self.net.AddGradientOperators(*args, **kwargs)
        self.param_to_grad = self.get_param_to_grad(self.params)
        for param, grad in self.param_to_grad.items():
            info = self.get_param_info(param)
            if info:
                info.grad = grad
            else:
                self._parameters_info[param] = parameter_info.ParameterInfo(
                    param_id=None, param=param, grad=grad)
        return self.grad_map

    def get_param_to_grad(self, params) -> dict:
        """{param: its gradient} for those of `params` that have one."""
        if not self.gradient_ops_added:
            raise RuntimeError("You need to run AddGradientOperators first.")
        return {p: self.grad_map[str(p)] for p in params if str(p) in self.grad_map}

    def GetOptimizationParamInfo(self, params=None):
        """The ParameterInfo of each parameter with a gradient (of `params`, default all;
        sparse gradients left out when skip_sparse_optim)."""
        if not self.gradient_ops_added:
            raise RuntimeError("Need to call AddGradientOperators first")
        param_to_grad = self.get_param_to_grad(params) if params else self.param_to_grad
        return [self.get_param_info(param) for param, grad in param_to_grad.items()
                if not self.skip_sparse_optim or not isinstance(grad, core.GradientSlice)]

    # -- whole-model views
    def GetCompleteNet(self):
        """One net: param_init_net's ops (debug_info marked "/param_init_net") then net's."""
        new_net = self.param_init_net.Clone(self.name + "_complete_net", keep_schema=True)
        for op in new_net.Proto().op:
            op.debug_info = op.debug_info + "/param_init_net"
        new_net.AppendNet(self.net)
        if self.net.Proto().HasField("type"):
            new_net.Proto().type = self.net.Proto().type
        return new_net

    def ConstructInitTrainNetfromNet(self, net) -> None:
        """Split a GetCompleteNet() net back into param_init_net and net."""
        ops = net.Proto().op
        init_ops = [i for i, op in enumerate(ops) if op.debug_info.endswith("/param_init_net")]
        train_ops = [i for i, op in enumerate(ops)
                     if not op.debug_info.endswith("/param_init_net")]
        self.param_init_net = net.Clone(net.Name() + "/generated_param_init_net",
                                        keep_schema=True, op_id_mask=init_ops,
                                        update_external_list=True)
        self.net = net.Clone(net.Name() + "/generated_net", keep_schema=True,
                             op_id_mask=train_ops, update_external_list=True)

    # -- op sugar
    def __getattr__(self, op_type):
        """`model.Relu(...)` is `model.net.Relu(...)` (Caffe2 warns for op types outside
        its known-safe list, and refuses them when allow_not_known_ops=False)."""
        if op_type.startswith("_"):  # no op type starts with "_"; keeps copy/pickle sane
            raise AttributeError(op_type)
        if not core.IsOperator(op_type):
            raise core._no_such_op(op_type)
        if op_type not in _known_working_ops:
            if not self.allow_not_known_ops:
                raise AttributeError(f"Operator {op_type} is not known to be safe")
            logger.warning("You are creating an op that the ModelHelper does not "
                           "recognize: %s.", op_type)
        return getattr(self.net, op_type)

    def __dir__(self):
        return sorted(set(chain(dir(type(self)), self.__dict__, _known_working_ops)))


def ExtractPredictorNet(net_proto, input_blobs, output_blobs, device=None, renames=None,
                        disabled_inputs=None):
    """A prediction net cut out of a training net: the ops from the first one reading an
    input to the last one writing an output, keeping those whose inputs are known (inputs,
    external inputs and earlier outputs). Returns (predict net, its external inputs that
    are not `input_blobs`, i.e. the parameters it needs).

    `renames` {old: new} renames blobs; `disabled_inputs` drops the branches reading them;
    `device` puts every op on that device. An op with is_test=0 (a training SpatialBN,
    Dropout) is an error: extract from a test model.
    """
    predict_net = core.Net(net_proto.name + "_predict")
    predict_proto = predict_net.Proto()
    orig_external_inputs = set(net_proto.external_input)
    orig_external_outputs = set(net_proto.external_output)
    input_blobs = [str(b) for b in input_blobs]
    output_blobs = [str(b) for b in output_blobs]
    known_blobs = orig_external_inputs | set(input_blobs)
    if disabled_inputs is not None:
        known_blobs -= set(disabled_inputs)
    renames = renames or {}
    # Ordered sets (dicts): Caffe2 used sets here, so its order was arbitrary.
    external_inputs = dict.fromkeys(input_blobs)
    external_outputs = dict.fromkeys(output_blobs)

    ops = list(net_proto.op)
    first = [j for j, op in enumerate(ops)
             if set(input_blobs) & set(op.input) and op.type != "StopGradient"]
    if not first:
        raise Exception(f"No ops with input={set(input_blobs)}")
    last = [j for j, op in enumerate(ops) if set(output_blobs) & set(op.output)]
    if not last:
        raise Exception(f"No ops with output={set(output_blobs)}")

    def rename_list(proto_list):
        renamed = [renames.get(b, b) for b in proto_list]
        del proto_list[:]
        proto_list.extend(renamed)

    def set_device(op):
        op.device_option.device_type = device.device_type
        op.device_option.device_id = device.device_id

    for original in ops[min(first):max(last) + 1]:
        if not known_blobs.issuperset(original.input):
            logger.debug("Op %s had unknown inputs: %s", original.type,
                         set(original.input) - known_blobs)
            continue
        op = predict_proto.op.add()
        op.CopyFrom(original)  # Caffe2 edited the caller's ops in place; this copies
        if op.type == "RecurrentNetwork":
            for arg in op.arg:
                if arg.name == "backward_step_net":
                    arg.ClearField("n")
                elif arg.name == "step_net":
                    for step_op in arg.n.op:
                        rename_list(step_op.input)
                        rename_list(step_op.output)
                        if device is not None:
                            set_device(step_op)
                    rename_list(arg.n.external_input)
                    rename_list(arg.n.external_output)
                    external_inputs.update(dict.fromkeys(
                        b for b in arg.n.external_input if b in orig_external_inputs))
        if device is not None:
            set_device(op)
        for arg in op.arg:
            if arg.name == "is_test" and arg.i == 0:
                raise Exception("An operator had is_test=0, did you try to extract a "
                                "predictor from a train model (instead of test model)? "
                                f"Op was: {op}")
        known_blobs.update(op.output)
        external_inputs.update(dict.fromkeys(b for b in op.input if b in orig_external_inputs))
        external_outputs.update(dict.fromkeys(
            b for b in op.output if b in orig_external_outputs))

    predict_proto.external_input.extend(external_inputs)
    predict_proto.external_output.extend(external_outputs)
    rename_list(predict_proto.external_input)
    rename_list(predict_proto.external_output)
    for op in predict_proto.op:
        rename_list(op.input)
        rename_list(op.output)
    renamed_inputs = {renames.get(b, b) for b in input_blobs}
    return predict_net, [b for b in predict_proto.external_input if b not in renamed_inputs]
