"""The functions behind `brew.<helper>` (Caffe2's `caffe2.python.helpers`), by family.

Each helper takes the model first, adds its parameters to `model.param_init_net` (through
`model.create_param`, so they are registered and tagged) and its ops to `model.net`, with
Caffe2 1.10's blob names, argument order and defaults. Call them through `brew`, which
applies `arg_scope` and the model's own `arg_scope` first.
"""
