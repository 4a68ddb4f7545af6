"""Tests of the `sdrc` command: the demo on real digits, and clear errors with a non-zero exit for bad arguments."""
import numpy as np
import pytest

from sdrc.cli import build_parser, demo, format_demo, main
from sdrc.snapshots import RunRecord


def test_demo_on_real_digits(digits_root):
    rows = demo("mnist", "usps", root=digits_root)
    p, q, exact, dec = rows["P"], rows["Q (SRDC eq. 2)"], rows["Q (exact eq. 1)"], rows["Q (DEC)"]
    assert 0.2 < p["accuracy"] < 1.0  # a source-only linear model: better than chance, hurt by the shift
    assert q["largest_cluster"] < p["largest_cluster"] and q["smallest_cluster"] > p["smallest_cluster"]
    assert exact["eq1"] <= q["eq1"] <= p["eq1"]
    assert dec["entropy"] < p["entropy"]
    table = format_demo(rows, "mnist", "usps")
    assert table.splitlines()[0].startswith("SRDC's distributions on the usps test set") and "p-hat (softmax)" in table


def test_demo_command_prints_the_table(digits_root, capsys):
    assert main(["demo", "--source", "mnistm", "--target", "mnist", "--data", str(digits_root)]) == 0
    out = capsys.readouterr().out
    assert "on the mnist test set, from a linear classifier fitted on mnistm" in out and "Q (DEC)" in out


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path)]) == 2
    assert "digits_real.npz was not found; looked in: " + str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--source", "svhn"], "invalid choice: 'svhn'"),
    (["demo", "--source", "usps", "--target", "usps"], "both 'usps'"),
    (["demo", "--seed", "x"], "invalid int value"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_arguments_exit_non_zero(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--source", "--target", "--data", "--seed", "SDRC_DATA"):
        assert option in text


# ---------------------------------------------------------------- train and info

def test_train_then_info(digits_root, tmp_path, capsys, monkeypatch):
    "A short real run through the command line (digit sets cut to 300 samples to keep it fast), then its table."
    import sdrc.cli as cli
    from sdrc.data import DomainPair, TensorDomain

    real_pair = cli.digit_pair

    def small_pair(*args, **kwargs):
        pair = real_pair(*args, **kwargs)
        cut = [TensorDomain(d.x[:300], d.y[:300], d.name, d.classes) for d in pair.splits().values()]
        return DomainPair(*cut, pair.classes)
    monkeypatch.setattr(cli, "digit_pair", small_pair)
    out = tmp_path / "run"
    argv = ["train", "--epochs", "1", "--out", str(out), "--data", str(digits_root), "--record-samples", "20",
            "--set", "detach_q=true"]
    assert main(argv) == 0
    assert "final target accuracy" in capsys.readouterr().out
    assert (out / "report.html").is_file()  # train writes the report at the end
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 0 and (tmp_path / "r.html").stat().st_size > 1e6
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "method=srdc, preset=official" in table and len(table.strip().splitlines()) == 4  # header, columns, 2 epochs
    columns, *rows = [line.removesuffix("  collapse") for line in table.splitlines()[1:]]
    assert {len(columns)} == {len(r) for r in rows}  # every value under its column name
    last = dict(zip(columns.split(), rows[-1].split()))
    assert float(last["acc_f_train"]) == pytest.approx(RunRecord.open(out).metric("acc_f_train")[-1], abs=5e-5)
    assert main(["select", str(out)]) == 0  # one training epoch: every score can only pick epoch 1
    picks = capsys.readouterr().out
    assert all(f"\n{name:<12}     1 " in picks for name in ("entropy", "im", "bnm", "snd", "ami", "dev", "last epoch"))
    assert main(argv) == 2 and "exists and is not empty" in capsys.readouterr().err  # nothing overwritten
    assert main(argv + ["--resume"]) == 0  # a finished run resumes to the same end


@pytest.mark.parametrize("argv, message", [
    (["train", "--source", "usps", "--target", "usps"], "both 'usps'"),
    (["train", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["train", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["train", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["train", "--device", "foo"], "unknown device 'foo'"),
    (["train", "--set", "detach=true"], "unknown SDRC option(s) detach"),
    (["train", "--method", "mcd"], "invalid choice: 'mcd'"),
    (["train", "--target", "svhn"], "unknown digit domain 'svhn'"),
    (["train", "--benchmark", "office31", "--source", "A", "--target", "W"], "--benchmark office31 needs --data"),
    (["train", "--benchmark", "imagenet"], "invalid choice: 'imagenet'"),
    (["train", "--workers", "-1"], "--workers must be an integer ≥ 0, got -1"),
    (["train", "--threads", "0"], "--threads must be a positive integer, got 0"),
])
def test_train_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_train_bad_override_is_a_clear_error_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--set", "detach=true", "--out", str(tmp_path / "r"), "--data", str(tmp_path)])
    assert exit_info.value.code == 2 and "unknown SDRC option(s) detach" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_info_and_report_of_a_missing_run(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "run.json not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "run.json not found" in capsys.readouterr().err


def test_parse_overrides():
    from sdrc.cli import parse_overrides
    assert parse_overrides(["detach_q=true", "beta=0.5", "q_kind=dec"]) == {"detach_q": True, "beta": 0.5, "q_kind": "dec"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_overrides(["detach_q"])


def _office_tree(root, domains=("amazon", "webcam"), per_class=2):
    "A tiny Office-31-shaped tree of random images: two classes in each domain."
    from PIL import Image
    rng = np.random.default_rng(0)
    for domain in domains:
        for cls in ("bike", "mug"):
            folder = root / domain / "images" / cls
            folder.mkdir(parents=True)
            for k in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / f"{k}.jpg")


def test_train_on_a_benchmark_read_from_disk(tmp_path, capsys, monkeypatch):
    "One epoch on an Office-31-shaped tree made on the spot; a small network stands in for ResNet-50 (minutes on a CPU)."
    import sdrc.cli as cli
    from torch import nn
    from sdrc.models import SRDCNet
    asked = []

    def small_net(num_classes, weights):
        asked.append(weights)
        backbone = nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return SRDCNet(backbone, 8, num_classes, 8)
    monkeypatch.setattr(cli, "resnet50_net", small_net)
    _office_tree(tmp_path / "office31")
    out = tmp_path / "run"
    argv = ["train", "--benchmark", "office31", "--data", str(tmp_path / "office31"), "--source", "A", "--target", "W",
            "--no-pretrained", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--threads", "2",
            "--record-samples", "0", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert "final target accuracy" in capsys.readouterr().out
    run = RunRecord.open(out)
    assert run.meta["data"]["target_train"]["name"] == "office31/W" and run.meta["data"]["target_train"]["size"] == 4
    assert len(run.meta["classes"]) == 31
    assert run.meta["backbone_lr_mult"] == 1.0 and run.meta["runtime"]["workers"] == 0
    assert asked == [None]  # --no-pretrained: no ImageNet weights (and no download)
    assert main(argv[:-4] + ["--source", "D", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "dataset root" in err and "dslr" in err


PLOTTING = ("plotly", "umap", "ipywidgets", "anywidget")


def test_training_imports_no_plotting_library():
    "A GPU node may hold only torch and its kin: the command and the trainer load without plotly, UMAP or widgets."
    import subprocess
    import sys
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in PLOTTING)
    code = f"import sys; {block}; import sdrc.cli, sdrc.train, sdrc.observe; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_train_without_plotting_libraries(tmp_path, capsys, monkeypatch):
    "Without plotly the run still trains and is recorded; the report is skipped with --no-report, or its absence explained."
    import sys
    import sdrc.cli as cli
    from torch import nn
    from sdrc.models import SRDCNet
    monkeypatch.setattr(cli, "resnet50_net", lambda num_classes, weights: SRDCNet(
        nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8, num_classes, 8))
    for name in PLOTTING:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "sdrc.report", raising=False)  # imported afresh, so it meets the missing plotly
    _office_tree(tmp_path / "office31")
    argv = ["train", "--benchmark", "office31", "--data", str(tmp_path / "office31"), "--source", "A", "--target", "W",
            "--no-pretrained", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--record-samples", "4",
            "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path / "quiet"), "--no-report"]) == 0
    assert "final target accuracy" in capsys.readouterr().out and not (tmp_path / "quiet" / "report.html").exists()
    assert len(RunRecord.open(tmp_path / "quiet").epochs) == 2
    assert main(argv + ["--out", str(tmp_path / "asked")]) == 1  # the report was asked for and cannot be drawn
    err = capsys.readouterr().err
    assert "the run is complete and recorded in" in err and "report could not be drawn" in err and "plotly" in err
    assert len(RunRecord.open(tmp_path / "asked").epochs) == 2
    assert main(["report", str(tmp_path / "asked")]) == 2  # drawing it here is refused in one line
    assert "sdrc report: error: import of plotly halted" in capsys.readouterr().err
