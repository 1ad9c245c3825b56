"""The fixed names of Caffe2's predictor format (`caffe2.python.predictor_constants`).

Caffe2 kept them as the defaults of a protobuf message (`PredictorConsts` in
predictor_consts.proto) and exposed one instance, `predictor_constants`; the strings are
part of the file format (DB keys, blob names, MetaNetDef map keys), so they are pinned
value by value in tests/unit/test_predictor_exporter.py.
"""
from __future__ import annotations


class PredictorConsts:
    """Caffe2 1.10's PredictorConsts defaults, read-only."""

    # DB key of the serialized MetaNetDef. It must be the first record a cursor meets: the
    # "!!" prefix sorts before any blob name in a key-ordered DB (LMDB), and save_to_db
    # writes it first into an insertion-ordered one (minidb).
    META_NET_DEF = "!!META_NET_DEF"
    # Blob holding the DBReader that the global init net's Load reads parameters from.
    PREDICTOR_DBREADER = "!!PREDICTOR_DBREADER"

    # MetaNetDef.blobs keys
    PARAMETERS_BLOB_TYPE = "PARAMETERS_BLOB_TYPE"
    INPUTS_BLOB_TYPE = "INPUTS_BLOB_TYPE"
    OUTPUTS_BLOB_TYPE = "OUTPUTS_BLOB_TYPE"

    # MetaNetDef.nets / .plans keys
    GLOBAL_INIT_NET_TYPE = "GLOBAL_INIT_NET_TYPE"
    PREDICT_INIT_NET_TYPE = "PREDICT_INIT_NET_TYPE"
    PREDICT_NET_TYPE = "PREDICT_NET_TYPE"
    TRAIN_INIT_PLAN_TYPE = "TRAIN_INIT_PLAN_TYPE"
    TRAIN_PLAN_TYPE = "TRAIN_PLAN_TYPE"

    # ModelInfo.predictorType values
    SINGLE_PREDICTOR = "SINGLE_PREDICTOR"
    MULTI_PREDICTOR = "MULTI_PREDICTOR"

    SHAPE_INFO_BLOB = "SHAPE_INFO_BLOB"
    DEFERRED_BLOB_READER = "__DEFERRED_BLOB_READER__"

    def __setattr__(self, name, value):
        raise AttributeError(f"predictor_constants.{name} is part of Caffe2's file format and "
                             "cannot be changed")

    def __repr__(self) -> str:
        return "<predictor_constants (Caffe2 1.10's PredictorConsts)>"


predictor_constants = PredictorConsts()
