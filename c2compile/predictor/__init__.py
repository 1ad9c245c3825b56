"""Caffe2's `caffe2.python.predictor`: export a trained model for inference, and load it back.

    from c2compile.predictor import predictor_exporter as pe
    meta = pe.PredictorExportMeta(predict_net=deploy.net, parameters=params,
                                  inputs=["data"], outputs=["softmax"])
    pe.save_to_db("minidb", "model.minidb", meta)      # one file: the MetaNetDef + parameters
    workspace.ResetWorkspace()
    net = pe.prepare_prediction_net("model.minidb", "minidb")   # blobs loaded, net created
    workspace.FeedBlob("data", batch); workspace.RunNet(net)

The file layout is Caffe2 1.x's, so a DB written here is read by Caffe2's own
`prepare_prediction_net` and the other way round (modules: `predictor_constants`,
`predictor_py_utils`, `serde`, `predictor_exporter`).
"""
