"""`c2compile show`."""
from c2compile import cli
from conftest import MODELS, load_netdef, squeezenet_init_net


def test_show_infers_shapes(capsys, tmp_path):
    load_netdef("squeezenet_predict.pb")  # skips when the model is absent
    init = tmp_path / "init_net.pb"
    init.write_bytes(squeezenet_init_net().SerializeToString())
    assert cli.main(["show", str(MODELS / "squeezenet_predict.pb"), "--init", str(init),
                     "--input", "data=1x3x227x227"]) == 0
    out = capsys.readouterr().out
    assert "MaxPool(conv1_o) -> pool1[1x64x56x56:FLOAT]" in out
    assert "Softmax(pool10) -> softmaxout[1x1000x1x1:FLOAT]" in out


def test_show_reports_bad_files(capsys, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff")
    assert cli.main(["show", str(bad)]) == 1
    assert "cannot parse" in capsys.readouterr().err
    assert cli.main(["show", str(tmp_path / "missing.pb")]) == 1
