"""Parameter bookkeeping for model builders, as `caffe2.python.modeling`: what a parameter is
(`parameter_info`), how it is initialised (`initializers`) and which name scopes share
parameters (`parameter_sharing`)."""
