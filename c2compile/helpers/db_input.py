"""brew.db_input: a DB of TensorProtos read batch by batch (the MNIST tutorial's input)."""
from __future__ import annotations


def db_input(model, blobs_out, batch_size, db, db_type):
    """Open `db` in the model's param_init_net (as the blob "dbreader_<db>", Caffe2's name)
    and read `batch_size` records per run of model.net into `blobs_out`."""
    reader = model.param_init_net.CreateDB([], "dbreader_" + db, db=db, db_type=db_type)
    return model.net.TensorProtosDBInput(reader, blobs_out, batch_size=batch_size)
