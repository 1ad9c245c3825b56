"""Caffe2's command-line flags, as `core.GlobalInit` takes them.

Caffe2 1.10 (c10 flags, no gflags) rejects a flag it does not know and a bool flag given no
value or a value other than true/false/1/0 (any case for the words), and reads `-flag=v`,
`--flag=v` and `--flag v` alike; anything not starting with "-" is left alone. The table is
every flag the PyTorch 1.10.2 CPU wheel registers (its `--help`), with Caffe2's defaults.
Only a few change what c2compile does; the rest are accepted so that scripts run unchanged.
"""
from __future__ import annotations

import threading

# name -> (type, default)
FLAGS: dict[str, tuple[type, object]] = {
    "caffe2_cpu_allocator_do_junk_fill": (bool, False),
    "caffe2_cpu_allocator_do_zero_fill": (bool, False),
    "caffe2_cpu_numa_enabled": (bool, False),
    "caffe2_cub_bin_growth": (int, 8),
    "caffe2_cub_max_bin": (int, 10),
    "caffe2_cub_max_managed_mb": (int, 10 * 1024),
    "caffe2_cub_min_bin": (int, 3),
    "caffe2_cub_print_allocation_events": (bool, False),
    "caffe2_cuda_memory_pool": (str, ""),
    "caffe2_disable_implicit_engine_preference": (bool, False),
    "caffe2_dnnlowp_acc16_density_threshold": (float, 0.05),
    "caffe2_dnnlowp_acc16_k_threshold": (int, 0),
    "caffe2_dnnlowp_acc16_m_threshold": (int, 0),
    "caffe2_dnnlowp_acc16_n_threshold": (int, 0),
    "caffe2_dnnlowp_activation_p99_threshold": (float, 0.99),
    "caffe2_dnnlowp_activation_quantization_kind": (str, "min_max"),
    "caffe2_dnnlowp_activation_quantization_precision": (int, 8),
    "caffe2_dnnlowp_copy_to_32bit_frequency": (int, 32),
    "caffe2_dnnlowp_dump_tensors": (bool, False),
    "caffe2_dnnlowp_eltwise_quantization_precision": (int, 16),
    "caffe2_dnnlowp_enforce_default_operators": (bool, False),
    "caffe2_dnnlowp_force_scale_power_of_two": (bool, False),
    "caffe2_dnnlowp_force_slow_path": (bool, False),
    "caffe2_dnnlowp_nbits_in_non_outlier": (int, 8),
    "caffe2_dnnlowp_preserve_activation_sparsity": (bool, False),
    "caffe2_dnnlowp_preserve_weight_sparsity": (bool, False),
    "caffe2_dnnlowp_requantization_multiplier_precision": (int, 32),
    "caffe2_dnnlowp_shared_int32_buffer": (bool, False),
    "caffe2_dnnlowp_weight_p99_threshold": (float, 0.99),
    "caffe2_dnnlowp_weight_quantization_kind": (str, "min_max"),
    "caffe2_dnnlowp_weight_quantization_precision": (int, 8),
    "caffe2_force_shared_col_buffer": (bool, False),
    "caffe2_gpu_memory_report_interval_mb": (int, 128),
    "caffe2_gpu_memory_tracking": (bool, False),
    "caffe2_handle_executor_threads_exceptions": (bool, False),
    "caffe2_keep_on_shrink": (bool, True),
    "caffe2_log_level": (int, 1),
    "caffe2_max_keep_on_shrink_memory": (int, 2**63 - 1),
    "caffe2_max_tensor_serializer_threads": (int, 16),
    "caffe2_mkl_num_threads": (int, 0),
    "caffe2_net_async_check_stream_status": (bool, False),
    "caffe2_net_async_inference_mode": (bool, False),
    "caffe2_net_async_max_gpus": (int, 16),
    "caffe2_net_async_max_numa_nodes": (int, 8),
    "caffe2_net_async_names_to_trace": (str, ""),
    "caffe2_net_async_profile_operators": (bool, False),
    "caffe2_net_async_run_root_tasks_inline": (bool, False),
    "caffe2_net_async_thread_pool_size": (int, 0),
    "caffe2_net_async_tracing_dumping_nth": (int, 10000),
    "caffe2_net_async_tracing_filepath": (str, "/tmp"),
    "caffe2_net_async_tracing_nth": (int, 100),
    "caffe2_net_async_use_per_net_pools": (bool, False),
    "caffe2_net_async_use_single_pool": (bool, False),
    "caffe2_omp_num_threads": (int, 0),
    "caffe2_operator_max_engine_name_length": (int, 10),
    "caffe2_operator_throw_if_fp_exceptions": (bool, False),
    "caffe2_operator_throw_if_fp_overflow_exceptions": (bool, False),
    "caffe2_operator_throw_on_first_occurrence_if_fp_exceptions": (bool, False),
    "caffe2_override_executor": (str, ""),
    "caffe2_plan_executor_exception_timeout": (int, 60),
    "caffe2_print_blob_sizes_at_exit": (bool, False),
    "caffe2_print_stacktraces": (bool, False),
    "caffe2_profile_depthwise": (bool, False),
    "caffe2_profile_nnpack": (bool, False),
    "caffe2_quit_on_unsupported_cpu_feature": (bool, False),
    "caffe2_report_cpu_memory_usage": (bool, False),
    "caffe2_rnn_executor": (bool, True),
    "caffe2_serialize_fp16_as_bytes": (bool, False),
    "caffe2_serialize_using_bytes_as_holder": (bool, False),
    "caffe2_simple_net_benchmark_run_whole_net": (bool, True),
    "caffe2_streams_per_gpu": (int, 1),
    "caffe2_task_graph_engine": (str, "futures"),
    "caffe2_tensor_chunk_size": (int, 1000000),
    "caffe2_threadpool_android_cap": (int, 1),
    "caffe2_threadpool_force_inline": (bool, False),
    "caffe2_threadpool_ios_cap": (int, 1),
    "caffe2_threadpool_macos_cap": (int, 1),
    "caffe2_use_fatal_for_enforce": (bool, False),
    "caffe2_version": (bool, False),
    "caffe2_workspace_stack_debug": (bool, False),
    "enforce_fp32_inputs_into_fp16": (bool, False),
    "fake_fp16_conversion_use_fp16_acc": (bool, False),
    "fake_fp16_conversion_use_nnpi": (bool, False),
    "logtostderr": (bool, False),
    "merge_fp32_inputs_into_fp16": (bool, False),
    "minloglevel": (int, 0),
    "onnxifi_adjust_batch": (bool, True),
    "onnxifi_blacklist": (str, ""),
    "onnxifi_blacklist_ops": (str, ""),
    "onnxifi_debug_mode": (bool, False),
    "onnxifi_input_output_observe_list": (str, ""),
    "onnxifi_min_ops": (int, 1),
    "onnxifi_shape_hints": (str, ""),
    "onnxifi_timeout_ms": (int, 0),
    "pthreadpool_size": (int, 0),
    "static_runtime_enable_fast_math": (bool, True),
    "torch_jit_bailout_depth": (int, 20),
    "torch_jit_disable_cat": (bool, False),
    "torch_jit_disable_warning_prints": (bool, False),
    "torch_jit_enable_new_executor": (bool, True),
    "torch_jit_enable_rethrow_caught_exception": (bool, False),
    "torch_jit_llvm_use_fast_intrinsics": (bool, False),
    "torch_jit_num_profiled_runs": (int, 1),
    "use_onnxifi_batch_size": (bool, True),
    "v": (int, 0),
    "verify_only_single_subnet": (bool, False),
}

_values: dict[str, object] = {}
_lock = threading.Lock()

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _convert(name: str, kind: type, text: str):
    if kind is bool:
        low = text.lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise RuntimeError(f"flag --{name}: cannot convert '{text}' to bool (pass "
                           f"--{name}=true or --{name}=false)")
    try:
        return kind(text)
    except ValueError:
        # Caffe2 read numbers with atoi/atof (so "abc" became 0); we say so instead.
        raise RuntimeError(f"flag --{name}: '{text}' is not a valid {kind.__name__}") from None


def parse(args) -> dict[str, object]:
    """Parse Caffe2-style argv (args[0] is the program name); returns {flag: value}.

    RuntimeError for an unknown flag, a missing value or a value of the wrong type.
    """
    parsed: dict[str, object] = {}
    args = [str(a) for a in args[1:]]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            continue  # positional: c10 leaves these to the program
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, sep, text = body.partition("=")
        if name not in FLAGS:
            raise RuntimeError(f"unrecognized commandline argument: {arg}")
        if not sep:
            if i == len(args):
                raise RuntimeError(f"flag --{name} needs a value (--{name}=VALUE)")
            text = args[i]
            i += 1
        parsed[name] = _convert(name, FLAGS[name][0], text)
    return parsed


def set_flags(values: dict[str, object]) -> None:
    with _lock:
        _values.update(values)


def get(name: str):
    """The flag's value set by GlobalInit, else Caffe2's default."""
    if name not in FLAGS:
        raise KeyError(f"unknown Caffe2 flag '{name}'")
    return _values.get(name, FLAGS[name][1])
