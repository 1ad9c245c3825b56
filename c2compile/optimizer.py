"""Parameter updates for a model with gradients: Caffe2 1.10's `caffe2.python.optimizer`.

    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=1, gamma=0.999)

adds, for every parameter with a gradient (in `model.params` order), the update ops to
`model.net` and their state to `model.param_init_net`, exactly as Caffe2 did:

* a shared iteration counter: `optimizer_iteration` (int64 ConstantFill) and
  `iteration_mutex` (CreateMutex) in param_init_net, AtomicIter in net, all on the CPU
  (`utils.BuildUniqueMutexIter`);
* one LearningRate op per optimizer, output `<Class>_<instance>_lr_cpu`, with base_lr
  negated for descent (SGD with momentum keeps it positive: MomentumSGDUpdate subtracts)
  and the remaining keyword arguments of build_* as its policy arguments;
* per parameter: SGD `WeightedSum([w, ONE_<dev>, grad, lr], w)` with a ConstantFill
  `ONE_0_0` (added once per parameter, as in Caffe2), or `MomentumSGDUpdate` with
  `<w>_momentum`; Adam with `<w>_first_moment`/`<w>_second_moment`; Adagrad with
  `<w>_squared_sum` (weight_decay skipped for 1-D parameters). Sparse gradients
  (GradientSlice) get the sparse variants.

Each op is created in the device scope of the op that made the parameter (so on the CPU
each carries an empty DeviceOption, as Caffe2's did). Optimizer instances are counted per
class and process (`reset_optimizer_instance_count()` starts again at 0); a parameter
created under `optimizer_context.UseOptimizer(...)` is updated by that optimizer instead.
"""
from __future__ import annotations

import copy
import logging
import warnings
from collections import defaultdict, namedtuple

import numpy as np

from c2compile import core, scope, utils, workspace
from c2compile.modeling import parameter_info
from c2compile.proto import caffe2_pb2

logger = logging.getLogger(__name__)

_LEARNING_RATE_INJECTION = "lr_injection"

AuxOptimizerParams = namedtuple("AuxOptimizerParams", ["local", "shared"])
_optimizer_instance_count: defaultdict = defaultdict(int)

FP16_ENGINES = ["SIMD_Q_FP16", "SIMD_Q_STOC_FP16", "SIMD_Q_STOC_MKL_FP16"]


def reset_optimizer_instance_count() -> None:
    """Number optimizers from 0 again (blob names such as SgdOptimizer_0_lr_cpu)."""
    _optimizer_instance_count.clear()


class Optimizer:
    """Adds the update ops of one parameter: `optimizer(net, param_init_net, param_info)` or
    `optimizer(net, param_init_net, param, grad)`."""

    def __init__(self):
        self._aux_params = AuxOptimizerParams(local=[], shared=[])
        self._instance_num = _optimizer_instance_count[self.__class__.__name__]
        _optimizer_instance_count[self.__class__.__name__] += 1
        self._lr_multiplier = None
        self._local_lr_multiplier = None
        self._local_lr_multiplier_on_gpu = False

    def __call__(self, net, param_init_net, param, grad=None):
        if grad is None:
            if not isinstance(param, parameter_info.ParameterInfo):
                raise AssertionError(f"Expected parameter to be of type ParameterInfo, got "
                                     f"{param}")
            if param.grad is None:
                raise AssertionError(f"parameter {param} has no gradient")
        else:
            if isinstance(param, str):
                param = core.BlobReference(param)
            param = parameter_info.ParameterInfo(param_id=None, param=param, grad=grad)
        self._run(net, param_init_net, param)

    def _run(self, net, param_init_net, param_info):
        raise NotImplementedError(f"{type(self).__name__} does not implement _run")

    # -- names
    def get_cpu_blob_name(self, base_str, node_name=""):
        return f"{type(self).__name__}_{self._instance_num}_{base_str}{node_name}_cpu"

    def get_gpu_blob_name(self, base_str, gpu_id, node_name):
        return f"{type(self).__name__}_{self._instance_num}_{base_str}{node_name}_gpu{gpu_id}"

    def make_unique_blob_name(self, base_str):
        """A blob name unique to this optimizer instance and the current device."""
        current = scope.CurrentDeviceScope()
        if current is None:
            return self.get_cpu_blob_name(base_str)
        if core.IsGPUDeviceType(current.device_type):
            return self.get_gpu_blob_name(base_str, current.device_id, current.node_name)
        return self.get_cpu_blob_name(base_str, current.node_name)

    @property
    def attributes(self) -> dict:
        """The optimizer's settings (its attributes but the instance number)."""
        attr = copy.deepcopy(self.__dict__)
        del attr["_instance_num"]
        return attr

    # -- learning rate
    def build_lr(self, net, param_init_net, base_learning_rate, learning_rate_blob=None,
                 policy="fixed", iter_val=0, **kwargs):
        """(learning rate blob, iteration blob): LearningRate(base_lr=-base_learning_rate)
        on the shared iteration counter, once per optimizer, times the multipliers set."""
        if learning_rate_blob is None:
            learning_rate_blob = self.make_unique_blob_name("lr")
        iteration = utils.BuildUniqueMutexIter(param_init_net, net, iter_val=iter_val)
        if not net.BlobIsDefined(learning_rate_blob):
            # minimizing: descend along the gradient, so the rate is negative
            lr = net.LearningRate([iteration], learning_rate_blob, base_lr=-base_learning_rate,
                                  policy=policy, **kwargs)
        else:
            lr = net.GetBlobRef(learning_rate_blob)
        if self._lr_multiplier is not None:
            multiplier = net.CopyFromCPUInput(self._lr_multiplier,
                                              self.make_unique_blob_name("lr_multiplier"))
            lr = net.Mul([lr, multiplier], self.make_unique_blob_name("scaled_lr"), broadcast=1)
        if self._local_lr_multiplier is not None:
            current = scope.CurrentDeviceScope()
            local = self._local_lr_multiplier
            if current is not None and core.IsGPUDeviceType(current.device_type) \
                    and not self._local_lr_multiplier_on_gpu:
                local = net.CopyFromCPUInput(local,
                                             self.make_unique_blob_name("local_lr_multiplier"))
            lr = net.Mul([lr, local], self.make_unique_blob_name("local_scaled_lr"),
                         broadcast=1)
        return lr, iteration

    def add_lr_multiplier(self, lr_multiplier) -> None:
        """Multiply the learning rate by this (CPU) blob from now on (None: no multiplier)."""
        self._lr_multiplier = lr_multiplier

    def _add_local_lr_multiplier(self, local_lr_multiplier, is_gpu_blob=False) -> None:
        self._local_lr_multiplier = local_lr_multiplier
        self._local_lr_multiplier_on_gpu = is_gpu_blob

    def _clear_local_lr_multiplier(self) -> None:
        self._local_lr_multiplier = None
        self._local_lr_multiplier_on_gpu = False

    def _lars_multiplier(self, net, param_init_net, param, grad) -> None:
        """LARS: scale this parameter's rate by a Lars op's trust ratio."""
        if self.lars < 0:
            raise AssertionError(f"Lars offset must be nonnegative, got {self.lars}")
        wd, trust, lr_max = self.create_lars_inputs(param_init_net, 0.0, 1.0,
                                                    np.finfo(np.float32).max)
        multiplier = net.Lars([param, grad, wd, trust, lr_max],
                              self.make_unique_blob_name(str(param) + "_lars"),
                              offset=self.lars, lr_min=0.0)
        current = scope.CurrentDeviceScope()
        self._add_local_lr_multiplier(
            multiplier,
            is_gpu_blob=current is not None and core.IsGPUDeviceType(current.device_type))

    @staticmethod
    def dedup(net, sparse_dedup_aggregator, grad):
        """A sparse gradient with repeated indices merged (when an aggregator is given)."""
        if not isinstance(grad, core.GradientSlice):
            raise AssertionError(f"Dedup only works for sparse gradient, got {grad}")
        if sparse_dedup_aggregator:
            return net.DeduplicateGradientSlices(grad, aggregator=sparse_dedup_aggregator)
        return grad

    def get_auxiliary_parameters(self) -> AuxOptimizerParams:
        """The optimizer's state blobs: `local` (one per parameter: momentum, moments,
        squared sums) and `shared` (ONE, the iteration counter)."""
        return self._aux_params

    def scale_learning_rate(self, *args, **kwargs):
        raise NotImplementedError("Optimizer Need to Implement `scale_learning_rate` method.")

    def create_lars_inputs(self, param_init_net, weight_decay, trust, lr_max):
        return tuple(param_init_net.ConstantFill([], name, shape=[1], value=value)
                     for name, value in (("weight_decay", weight_decay), ("trust", trust),
                                         ("lr_max", lr_max)))


def _device_one(param_init_net, dev, with_node_name=True):
    """The ConstantFill 1.0 blob `ONE_<type>_<id>[<node>]` of the current device (each
    device needs its own). Added again on every call, as Caffe2 did."""
    node = dev.node_name if with_node_name else ""
    return param_init_net.ConstantFill([], f"ONE_{dev.device_type}_{dev.device_id}{node}",
                                       shape=[1], value=1.0)


def _current_device():
    dev = scope.CurrentDeviceScope()
    return core.DeviceOption(caffe2_pb2.CPU) if dev is None else dev


class SgdOptimizer(Optimizer):
    """w += lr * grad (WeightedSum), or MomentumSGDUpdate when momentum > 0 (nesterov by
    default). Other keyword arguments go to LearningRate (policy arguments)."""

    def __init__(self, base_learning_rate=0.01, policy="fixed", momentum=0.0, nesterov=True,
                 sparse_dedup_aggregator=None, lars=None, **kwargs):
        super().__init__()
        self.base_learning_rate = base_learning_rate
        self.policy = policy
        self.momentum = momentum
        self.nesterov = nesterov
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.lars = lars
        if "weight_decay" in kwargs:
            # Caffe2's SGD has no weight decay: it passed the argument on to LearningRate,
            # which ignored it. c2compile's LearningRate refuses unknown arguments, so drop
            # it here (the update is Caffe2's: no decay) and say so.
            kwargs.pop("weight_decay")
            warnings.warn("build_sgd/SgdOptimizer: weight_decay is ignored (as in Caffe2, "
                          "whose SGD has none); use optimizer.add_weight_decay(model, wd) "
                          "before build_sgd", UserWarning, stacklevel=3)
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.base_learning_rate == 0:
            return
        if self.base_learning_rate <= 0:
            raise AssertionError(f"Expect positive base learning rate, got "
                                 f"{self.base_learning_rate}")
        self._clear_local_lr_multiplier()
        if self.lars is not None and not isinstance(grad, core.GradientSlice):
            self._lars_multiplier(net, param_init_net, param, grad)
        # WeightedSum adds lr * grad, so lr must be negative; MomentumSGDUpdate subtracts.
        lr_sign = -1 if self.momentum else 1
        lr, _ = self.build_lr(net, param_init_net,
                              base_learning_rate=self.base_learning_rate * lr_sign,
                              policy=self.policy, **self.init_kwargs)
        one = _device_one(param_init_net, _current_device())
        self._aux_params.shared.append(one)
        if self.momentum > 0:
            momentum_data = param_init_net.ConstantFill(param, str(param) + "_momentum",
                                                        value=0.0)
            self._aux_params.local.append(momentum_data)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            if self.momentum > 0.0:
                net.SparseMomentumSGDUpdate(
                    [grad.values, momentum_data, lr, param, grad.indices],
                    [grad.values, momentum_data, param],
                    momentum=self.momentum, nesterov=self.nesterov)
            else:
                net.ScatterWeightedSum([param, one, grad.indices, grad.values, lr], param)
        elif self.momentum > 0.0:
            net.MomentumSGDUpdate([grad, momentum_data, lr, param],
                                  [grad, momentum_data, param],
                                  momentum=self.momentum, nesterov=self.nesterov)
        else:
            net.WeightedSum([param, one, grad, lr], param)

    def scale_learning_rate(self, scale) -> None:
        self.base_learning_rate *= scale


class WeightDecayBuilder(Optimizer):
    """grad += weight_decay * param (WeightedSum in place, blobs ONE_<dev> and wd_<dev>)."""

    def __init__(self, weight_decay):
        super().__init__()
        self.weight_decay = weight_decay

    def _run(self, net, param_init_net, param_info):
        dev = _current_device()
        one = _device_one(param_init_net, dev, with_node_name=False)
        wd = param_init_net.ConstantFill([], f"wd_{dev.device_type}_{dev.device_id}",
                                         shape=[1], value=self.weight_decay)
        if isinstance(param_info.grad, core.GradientSlice):
            raise ValueError("Weight decay does not yet support sparse gradients")
        net.WeightedSum([param_info.grad, one, param_info.blob, wd], param_info.grad)


class AdagradOptimizer(Optimizer):
    """Adagrad (dense) / SparseAdagrad / RowWiseSparseAdagrad (rowWise, sparse only), state
    `<w>_squared_sum` (`<w>_avg_squared_sum` per row). weight_decay applies to parameters
    of more than one dimension. Caffe2's pruning masks, SWA, EMA, weight scaling and row
    counters are not supported (they raise)."""

    def __init__(self, alpha=0.01, epsilon=1e-4, decay=1, weight_decay=0.0, policy="fixed",
                 sparse_dedup_aggregator=None, rowWise=False, engine="", lars=None,
                 output_effective_lr=False, output_effective_lr_and_update=False,
                 pruning_options=None, swa_options=None, ema_options=None, weight_scale=None,
                 counter_halflife=-1, **kwargs):
        unsupported = {"pruning_options": pruning_options, "swa_options": swa_options,
                       "ema_options": ema_options, "weight_scale": weight_scale}
        for name, value in unsupported.items():
            if value:
                raise NotImplementedError(f"AdagradOptimizer: {name} is not supported by "
                                          "c2compile")
        if counter_halflife > 0:
            raise NotImplementedError("AdagradOptimizer: counter_halflife is not supported by "
                                      "c2compile")
        if engine in FP16_ENGINES:
            raise NotImplementedError(f"AdagradOptimizer: engine {engine} (float16 state) is "
                                      "not supported by c2compile")
        super().__init__()
        self.alpha = alpha
        self.epsilon = epsilon
        self.decay = decay
        self.weight_decay = float(weight_decay)
        self.policy = policy
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.rowWise = rowWise
        self.engine = engine
        self.lars = lars
        self.output_effective_lr = output_effective_lr
        self.output_effective_lr_and_update = output_effective_lr_and_update
        self.counter_halflife = counter_halflife
        self.init_kwargs = kwargs

    def _squared_sum(self, param_init_net, param):
        if not self.rowWise:
            return param_init_net.ConstantFill([param], str(param) + "_squared_sum", value=0.0)
        shapes, _ = workspace.InferShapesAndTypes([param_init_net])
        if str(param) in shapes:
            return param_init_net.ConstantFill([], str(param) + "_avg_squared_sum",
                                               shape=[shapes[str(param)][0]], value=0.0)
        # shape unknown until run: one entry per row, from the parameter's own shape
        shape = param_init_net.Shape(param, str(param) + "_shape")
        num_rows = param_init_net.Slice([shape], str(shape) + "_numrows", starts=[0], ends=[1])
        return param_init_net.ConstantFill(num_rows, str(param) + "_avg_squared_sum",
                                           input_as_shape=1, value=0.0)

    def _weight_decay_for(self, param_init_net, param) -> float:
        """Caffe2 skips weight decay for 1-D parameters (biases), by the shape the init net
        gives them."""
        if self.weight_decay == 0:
            return 0.0
        shapes, _ = workspace.InferShapesAndTypes([param_init_net])
        if len(shapes[str(param)]) == 1:
            logger.warning("SKIPPING weight decay on 1d param: %s.shape is %s", param,
                           shapes[str(param)])
            return 0.0
        return self.weight_decay

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        self._clear_local_lr_multiplier()
        if self.lars is not None and not isinstance(grad, core.GradientSlice):
            if self.weight_decay != 0:
                raise AssertionError("weight decay is not implemented for LARS yet")
            self._lars_multiplier(net, param_init_net, param, grad)
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                              policy=self.policy, **self.init_kwargs)
        squared_sum = self._squared_sum(param_init_net, param)
        self._aux_params.local.append(squared_sum)
        if self.rowWise and not isinstance(grad, core.GradientSlice):
            raise AssertionError(
                "If SparseAdagrad with rowWise=True, gradient must be a gradientslice. PLease "
                "ensure that rowWise is not enabled for the dense Adagrad optimizer, as it is "
                "not supported.")
        weight_decay = self._weight_decay_for(param_init_net, param)
        decay_args = {"weight_decay": weight_decay} if weight_decay > 0 else {}
        if isinstance(grad, core.GradientSlice):
            if self.decay != 1.0:
                raise AssertionError("Decay is not implemented for SparseAdagrad and must be "
                                     "set to 1")
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            op = "RowWiseSparseAdagrad" if self.rowWise else "SparseAdagrad"
            getattr(net, op)([param, squared_sum, grad.indices, grad.values, lr],
                             [param, squared_sum], epsilon=self.epsilon, **decay_args,
                             engine=self.engine)
            return
        outputs = [param, squared_sum]
        if self.output_effective_lr_and_update:
            outputs += [str(param) + "_effective_lr", str(param) + "_update"]
        elif self.output_effective_lr:
            outputs.append(str(param) + "_effective_lr")
        net.Adagrad([param, squared_sum, grad, lr], outputs, epsilon=self.epsilon,
                    decay=float(self.decay), **decay_args, engine=self.engine)

    def scale_learning_rate(self, scale) -> None:
        self.alpha *= scale


class AdamOptimizer(Optimizer):
    """Adam (dense) / SparseAdam / RowWiseSparseAdam, state `<w>_first_moment` and
    `<w>_second_moment` (`<w>_avg_second_moment` per row); use_lr_adaption adds
    LearningRateAdaption. Caffe2's smart decay is not supported (it raises)."""

    def __init__(self, alpha=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, policy="fixed",
                 use_lr_adaption=False, lr_alpha=0.01, normalized_lr_adaption=True,
                 sparse_dedup_aggregator=None, rowWise=False, engine="", enableRAdam=False,
                 use_smart_decay=False, **kwargs):
        if use_smart_decay:
            raise NotImplementedError("AdamOptimizer: use_smart_decay is not supported by "
                                      "c2compile")
        super().__init__()
        self.alpha = alpha
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.policy = policy
        self.use_lr_adaption = use_lr_adaption
        self.lr_alpha = lr_alpha
        self.normalized_lr_adaption = normalized_lr_adaption
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.rowWise = rowWise
        self.engine = engine
        self.enableRAdam = enableRAdam
        self.use_smart_decay = False
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, iteration = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                                      policy=self.policy, **self.init_kwargs)
        # param is a BlobReference: these names are not put in the name scope (Caffe2's)
        m1 = param_init_net.ConstantFill([param], param + "_first_moment", value=0.0)
        if self.rowWise:
            shapes, _ = workspace.InferShapesAndTypes([param_init_net])
            m2 = param_init_net.ConstantFill([], param + "_avg_second_moment",
                                             shape=[shapes[param][0]], value=0.0)
        else:
            m2 = param_init_net.ConstantFill([param], param + "_second_moment", value=0.0)
        self._aux_params.shared.append(iteration)
        self._aux_params.local.append(m1)
        self._aux_params.local.append(m2)
        if self.rowWise and not isinstance(grad, core.GradientSlice):
            raise AssertionError(
                "If SparseAdam with rowWise=True, gradient must be a gradientslice. PLease "
                "ensure that rowWise is not enabled for the dense Adam optimizer, as it is not "
                "supported.")
        outputs = [param, m1, m2]
        if self.use_lr_adaption:
            effective_grad = str(param) + "_effective_grad"
            outputs.append(effective_grad)
        betas = dict(beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            inputs = [param, m1, m2, grad.indices, grad.values, lr, iteration]
            if self.rowWise:
                if self.enableRAdam:
                    raise AssertionError("Currently, RowWiseSparseAdam is not supported by "
                                         "RAdam!")
                net.RowWiseSparseAdam(inputs, outputs, **betas)
            else:
                net.SparseAdam(inputs, outputs, **betas, enableRAdam=self.enableRAdam)
            adapted = grad.values
        else:
            net.Adam([param, m1, m2, grad, lr, iteration], outputs, **betas)
            adapted = grad
        if self.use_lr_adaption:
            net.LearningRateAdaption([lr, adapted, effective_grad], [lr],
                                     lr_alpha=self.lr_alpha,
                                     normalized_lr_adaption=self.normalized_lr_adaption)

    def scale_learning_rate(self, scale) -> None:
        self.alpha *= scale


# ----------------------------------------------------------------------------- building

def _infer_blob_devices(net) -> dict:
    """{blob: the DeviceOption of the op that writes it} (Caffe2's core.InferBlobDevices)."""
    return {b: op.device_option for op in net.Proto().op for b in op.output}


def _get_param_to_device(model) -> dict:
    param_to_device = _infer_blob_devices(model.net)
    param_to_device.update(_infer_blob_devices(model.param_init_net))
    return param_to_device


def get_param_device(param_name, grad, param_to_device=None, default_device=None):
    """The device of a parameter: of the op that writes it, else of its gradient."""
    param_to_device = param_to_device or {}
    device = default_device
    if param_name in param_to_device:
        device = param_to_device[param_name]
    elif isinstance(grad, core.GradientSlice):
        for blob in (str(grad.values), str(grad.indices)):
            if blob in param_to_device:
                device = param_to_device[blob]
                break
    elif str(grad) in param_to_device:
        device = param_to_device[str(grad)]
    if device is None:
        raise AssertionError(f"Cannot infer device for {param_name}: no op creates it")
    return device


def get_lr_injection():
    """The current `lr_injection` multiplier (build with allow_lr_injection=True)."""
    return workspace.FetchBlob(_LEARNING_RATE_INJECTION)


def set_lr_injection(lr_injection_value) -> None:
    """Scale every learning rate by this from the next run (allow_lr_injection=True)."""
    workspace.FeedBlob(_LEARNING_RATE_INJECTION,
                       np.array([float(lr_injection_value)], dtype=np.float32))


def _calc_norm_ratio(model, params, name_scope, param_to_device, max_gradient_norm):
    """clip_norm / max(global gradient norm, clip_norm), computed on the CPU."""
    with core.NameScope(name_scope):
        grad_squared_sums = []
        for i, param in enumerate(params):
            device = get_param_device(str(param.blob), param.grad, param_to_device)
            with core.DeviceScope(device):
                grad = (param.grad.values if isinstance(param.grad, core.GradientSlice)
                        else param.grad)
                squared = model.net.SumSqrElements(grad, f"grad_{i}_squared_sum")
                grad_squared_sums.append(model.net.EnsureCPUOutput(squared))
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
            full = model.net.Sum(grad_squared_sums, "grad_squared_full_sum")
            global_norm = model.net.Pow(full, "global_norm", exponent=0.5)
            clip_norm = model.param_init_net.ConstantFill(
                [], "clip_norm", shape=[], value=float(max_gradient_norm))
            max_norm = model.net.Max([global_norm, clip_norm], "max_norm")
            return model.net.Div([clip_norm, max_norm], "norm_ratio")


def _build(model, optimizer, weights_only=False, use_param_info_optim=True,
           max_gradient_norm=None, allow_lr_injection=False):
    """Run `optimizer` on every parameter of `model` that has a gradient (its own optimizer
    from UseOptimizer first, if any), each in the device scope of its parameter."""
    param_to_device = _get_param_to_device(model)
    model.Validate()
    params = [info for info in model.GetOptimizationParamInfo()
              if not weights_only or info.blob in model.weights]
    lr_multiplier = None
    if max_gradient_norm is not None:
        lr_multiplier = _calc_norm_ratio(model, params, "norm_clipped_grad_update",
                                         param_to_device, max_gradient_norm)
    if allow_lr_injection:
        if not model.net.BlobIsDefined(_LEARNING_RATE_INJECTION):
            lr_injection = model.param_init_net.ConstantFill(
                [], _LEARNING_RATE_INJECTION, shape=[1], value=1.0)
        else:
            lr_injection = _LEARNING_RATE_INJECTION
        if lr_multiplier is None:
            lr_multiplier = lr_injection
        else:
            lr_multiplier = model.net.Mul([lr_multiplier, lr_injection], "lr_multiplier",
                                          broadcast=1)
    optimizer.add_lr_multiplier(lr_multiplier)
    for info in params:
        device = get_param_device(str(info.blob), info.grad, param_to_device)
        with core.DeviceScope(device):
            if info.optimizer and use_param_info_optim:
                info.optimizer(model.net, model.param_init_net, info)
            else:
                optimizer(model.net, model.param_init_net, info)
    return optimizer


def add_weight_decay(model, weight_decay):
    """grad += weight_decay * w for every weight (model.weights) with a gradient. Call it
    after AddGradientOperators and before build_*."""
    _build(model, WeightDecayBuilder(weight_decay=weight_decay), weights_only=True,
           use_param_info_optim=False)


def build_sgd(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False,
              **kwargs):
    """SGD on every parameter: policy (LearningRate's, with its arguments), momentum,
    nesterov, lars, sparse_dedup_aggregator. Returns the SgdOptimizer."""
    return _build(model, SgdOptimizer(base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_adagrad(model, base_learning_rate, parameters=None, max_gradient_norm=None,
                  allow_lr_injection=False, **kwargs):
    """Adagrad on every parameter (epsilon, decay, weight_decay, policy, rowWise, ...).
    `parameters` is accepted and ignored, as in Caffe2."""
    return _build(model, AdagradOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_adam(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False,
               **kwargs):
    """Adam on every parameter (beta1, beta2, epsilon, policy, rowWise, ...)."""
    return _build(model, AdamOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


# Caffe2's other builders need update ops c2compile does not define: they are here so that
# programs (and Caffe2's optimizer tests) importing them load, and raise when called.
_BUILDERS_WITHOUT_OPS = {
    "build_multi_precision_sgd": "FloatToHalf/HalfToFloat",
    "build_fp16_sgd": "FloatToHalf/HalfToFloat (float16 parameters)",
    "build_ftrl": "Ftrl",
    "build_gftrl": "GFtrl",
    "build_wngrad": "Wngrad",
    "build_storm": "Storm",
    "build_adadelta": "Adadelta",
    "build_decay_adagrad": "DecayAdagrad",
    "build_yellowfin": "YellowFin",
    "build_rms_prop": "RmsProp",
}


def _builder_without_ops(name: str, ops: str):
    def build(model, *args, **kwargs):
        raise NotImplementedError(f"optimizer.{name}: c2compile does not define the {ops} "
                                  "op(s) it needs; build_sgd, build_adam and build_adagrad "
                                  "are supported")
    build.__name__ = build.__qualname__ = name
    return build


globals().update({name: _builder_without_ops(name, ops)
                  for name, ops in _BUILDERS_WITHOUT_OPS.items()})
