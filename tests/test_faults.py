"""Fault injection: the mistakes, faults and crafted files a user can meet, against the command line.

Every case must end in one clear line and a non-zero exit: not a traceback (an unexpected error) and not a zero exit
(a silently wrong result). Each case runs in seconds on a small bundle these tests write. The tally (tried, clear
error, traceback, silent) is printed at the end of the test session.
"""
import contextlib
import errno
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sdrc.data
from sdrc.cli import main
from sdrc.core import soft_assignment
from sdrc.snapshots import RunRecord
from sdrc.train import CHECKPOINT, load_checkpoint

TALLY = {"tried": 0, "clear error": 0, "traceback": 0, "silent": 0}
SIZES = {"mnist": 200, "usps": 200, "mnistm": 200}  # training images per domain; the rest (60) is the test split


def write_bundle(path: Path, n: int = 260, mnistm_channels: int = 3, usps_x=None, seed: int = 0) -> Path:
    "A digit bundle of random images whose brightness depends on the class, so a network can learn something."
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in (("mnist", (28, 28)), ("usps", (16, 16)), ("mnistm", (32, 32, mnistm_channels))):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.integers(0, 80, (n, *shape)) + 17 * y.reshape(-1, *[1] * len(shape))).astype(np.uint8)
        arrays[f"{name}_x"], arrays[f"{name}_y"] = x, y
    if usps_x is not None:
        arrays["usps_x"] = usps_x
    arrays["mnistm_src_index"] = np.arange(n, dtype=np.int16)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "digits_real.npz", **arrays)
    return path


@pytest.fixture(autouse=True)
def small_splits(monkeypatch):
    monkeypatch.setattr(sdrc.data, "TRAIN_SIZES", SIZES)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle"))


def run_cli(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    "(exit status, stderr, escaped exception) of `sdrc ARGV`, run in this process."
    err, out = io.StringIO(), io.StringIO()
    code, escaped = None, None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except BaseException as exc:  # noqa: BLE001 - the point is to see what escapes
            escaped = exc
    return code, err.getvalue(), escaped


def outcome(argv: list[str]) -> tuple[str, str]:
    "Classify a command that must fail: ('clear error' | 'traceback' | 'silent', what it printed)."
    code, err, escaped = run_cli(argv)
    if escaped is not None:
        return "traceback", f"{type(escaped).__name__}: {escaped}"
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("sdrc: warning:", "usage:", "  "))
             and "it/s]" not in line and "s/it]" not in line]
    if code in (0, None):
        return "silent", err
    clear = len(lines) == 1 and "error" in lines[0] and "Traceback" not in err
    return ("clear error" if clear else "traceback"), err


def expect_clear_error(argv: list[str], *fragments: str) -> str:
    "Assert that `sdrc ARGV` fails with one clear line holding every fragment; returns that line."
    kind, text = outcome(argv)
    TALLY["tried"] += 1
    TALLY[kind] += 1
    assert kind == "clear error", text
    for fragment in fragments:
        assert fragment in text, text
    return text


def train_args(bundle: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--data", str(bundle), "--epochs", "2", "--batch-size", "64", "--record-samples", "30",
            "--threads", "1", "--out", str(out), *more]


@pytest.fixture(scope="module")
def finished(bundle, tmp_path_factory):
    "A finished 2-epoch run (MNIST→USPS on the small bundle), to copy and damage."
    out = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sdrc.data, "TRAIN_SIZES", SIZES)
        code, err, escaped = run_cli(train_args(bundle, out))
    assert code == 0 and escaped is None, err
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


# ---------------------------------------------------------------- arguments, devices, folders

@pytest.mark.parametrize("more, fragment", [
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must lie in (0, inf]"),
    (["--record-samples", "-1"], "--record-samples must be an integer ≥ 0"),
    (["--workers", "-1"], "--workers must be an integer ≥ 0"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--set", "detach=true"], "unknown SDRC option(s) detach"),
    (["--set", "alpha=-1"], "`alpha` must lie in"),
    (["--set", "kernel_norm=cosine"], "unknown kernel_norm 'cosine'"),
    (["--set", "alpha"], "--set expects NAME=VALUE"),
    (["--target", "svhn"], "unknown digit domain 'svhn'"),
    (["--source", "usps"], "both 'usps'"),
    (["--seed", str(2**64)], "--seed must be below 2**63"),
    (["--source-list", "list.txt"], "--source-list apply to images read from disk"),
    (["--method", "dann", "--ablation", "no-feature"], "ablation 'no-feature' would change nothing"),
    (["--method", "source-only", "--set", "alpha=2"], "overrides ['alpha'] would change nothing"),
    (["--method", "oracle", "--preset", "paper"], "--method oracle would ignore it"),
])
def test_bad_arguments(bundle, tmp_path, more, fragment):
    expect_clear_error(train_args(bundle, tmp_path / "run", *more), fragment)
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_run_as_short_as_its_warm_up_says_so(bundle, tmp_path):
    "One epoch of SRDC trains the source alone: allowed (a quick check), but said, not left silent."
    code, err, escaped = run_cli(train_args(bundle, tmp_path / "run", "--epochs", "1"))
    TALLY["tried"] += 1
    TALLY["clear error" if code == 0 and "SRDC's own terms never train" in err else "silent"] += 1
    assert code == 0 and "sdrc: warning:" in err and "SRDC's own terms never train" in err, err


def test_cuda_on_a_machine_without_a_gpu(bundle, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    expect_clear_error(train_args(bundle, tmp_path / "run", "--device", "cuda"), "has no usable CUDA GPU")


def test_out_names_a_file(bundle, tmp_path):
    (tmp_path / "file").write_text("mine")
    expect_clear_error(train_args(bundle, tmp_path / "file"), "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_out_where_nothing_can_be_written(bundle):
    expect_clear_error(train_args(bundle, Path("/proc/sdrc/run")), "/proc/sdrc")


def test_out_is_not_empty(bundle, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    expect_clear_error(train_args(bundle, tmp_path / "run"), "exists and is not empty")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("full_at, recorded", [(2, []), (4, [0])], ids=["at the first record", "at the first checkpoint"])
def test_a_full_disk_in_the_first_epoch_then_resume(bundle, tmp_path, monkeypatch, full_at, recorded):
    """The disk fills up in the first epoch (writes: run.json, epoch 0's record, run.json, the checkpoint): one line, what
    was written before stays whole, and once there is room again `--resume` starts the run again in its folder."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= full_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    expect_clear_error(train_args(bundle, tmp_path / "run"), "the disk is full")
    monkeypatch.setattr(os, "fsync", real)
    run = RunRecord.open(tmp_path / "run")
    assert run.epoch_numbers() == recorded and not list((tmp_path / "run").glob(".*.tmp"))
    code, err, escaped = run_cli(train_args(bundle, tmp_path / "run", "--resume"))
    assert code == 0 and escaped is None, err
    assert RunRecord.open(tmp_path / "run").epoch_numbers() == [0, 1, 2]


def test_the_run_folder_deleted_while_training(bundle, tmp_path, monkeypatch):
    "Someone deletes the run folder after epoch 0: the run stops with one line rather than write a folder without it."
    import sdrc.train
    line = sdrc.train.summary_line
    def delete_then_say(epoch, metrics):
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        return line(epoch, metrics)
    monkeypatch.setattr(sdrc.train, "summary_line", delete_then_say)
    expect_clear_error(train_args(bundle, tmp_path / "run"), "was deleted or replaced while its run was writing it")
    assert not (tmp_path / "run").exists()


def test_a_loss_that_diverges_stops_with_the_likely_cause(bundle, tmp_path):
    expect_clear_error(train_args(bundle, tmp_path / "run", "--lr", "1e12"), "training diverged", "learning rate")


# ---------------------------------------------------------------- data

def test_a_bundle_with_five_channel_images(tmp_path):
    bad = write_bundle(tmp_path / "bad", mnistm_channels=5)
    expect_clear_error(train_args(bad, tmp_path / "run", "--target", "mnistm"), "'mnistm_x' should hold N×H×W×3")


def _bundle_with(tmp_path: Path, **changes) -> Path:
    "A small bundle with some of its arrays replaced."
    folder = write_bundle(tmp_path / "changed")
    with np.load(folder / "digits_real.npz") as npz:
        arrays = dict(npz)
    arrays.update(changes)
    np.savez(folder / "digits_real.npz", **arrays)
    return folder


@pytest.mark.parametrize("images, labels", [(0, 0), (2, 2)], ids=["an empty domain", "two images"])
def test_a_bundle_with_too_few_images(tmp_path, images, labels):
    folder = _bundle_with(tmp_path, usps_x=np.zeros((images, 16, 16), np.uint8), usps_y=np.zeros(labels, np.uint8))
    expect_clear_error(train_args(folder, tmp_path / "run"), f"usps holds {images} images", "at least 3 images")


def test_a_bundle_with_empty_images(tmp_path):
    folder = _bundle_with(tmp_path, usps_x=np.zeros((260, 0, 0), np.uint8))
    expect_clear_error(train_args(folder, tmp_path / "run"), "usps holds 260 images of 0×0 pixels", "at least 8×8")


def test_a_bundle_with_float_labels(tmp_path):
    folder = _bundle_with(tmp_path, usps_y=np.full(260, 2.5, np.float32))
    expect_clear_error(train_args(folder, tmp_path / "run"), "'usps_y' should be a 1-D uint8 array", "float32")


def test_imagenet_weights_without_a_network(tmp_path, monkeypatch):
    "A benchmark run needs ImageNet's ResNet-50 weights; with no cached copy and no network, the line says what to do."
    import urllib.error
    import torchvision.models._api as weights_api
    from test_cli import _office_tree
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", no_network)
    _office_tree(tmp_path / "office31")
    expect_clear_error(["train", "--benchmark", "office31", "--source", "A", "--target", "W", "--data",
                        str(tmp_path / "office31"), "--epochs", "2", "--out", str(tmp_path / "run")],
                       "ImageNet weights of ResNet-50", "could not be downloaded", "--no-pretrained")


def _small_resnet(monkeypatch):
    "A small network in place of ResNet-50, so that a benchmark run takes seconds."
    import sdrc.cli as cli
    from torch import nn
    from sdrc.models import SRDCNet
    monkeypatch.setattr(cli, "resnet50_net", lambda num_classes, weights: SRDCNet(
        nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8, num_classes, 8))


def _office_args(root: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--benchmark", "office31", "--source", "A", "--target", "W", "--data", str(root), "--epochs", "2",
            "--batch-size", "4", "--record-samples", "4", "--no-pretrained", "--no-report", "--out", str(out), *more]


def test_a_list_file_that_is_not_utf8(tmp_path):
    from test_cli import _office_tree
    _office_tree(tmp_path / "office31")
    (tmp_path / "list.txt").write_bytes("amazon/images/bike/0.jpg 0\n".encode("utf-16"))
    expect_clear_error(_office_args(tmp_path / "office31", tmp_path / "run", "--source-list", str(tmp_path / "list.txt")),
                       "list.txt is not UTF-8 text", "save it as UTF-8")


def test_a_list_file_with_a_byte_order_mark_is_read(tmp_path):
    "Some editors start a UTF-8 file with a byte-order mark: it is not part of the first path."
    from test_cli import _office_tree
    from sdrc.data import benchmark_domain
    _office_tree(tmp_path / "office31")
    (tmp_path / "list.txt").write_text("amazon/images/bike/0.jpg 0\namazon/images/mug/1.jpg 1\n", encoding="utf-8-sig")
    domain = benchmark_domain("office31", "A", tmp_path / "office31", tmp_path / "list.txt")
    assert [p.name for p, _ in domain.samples] == ["0.jpg", "1.jpg"] and domain.y.tolist() == [0, 1]


def test_a_corrupt_image_met_while_training(tmp_path, monkeypatch):
    "An image that cannot be decoded stops the run with one line naming it."
    from test_cli import _office_tree
    _small_resnet(monkeypatch)
    _office_tree(tmp_path / "office31")
    (tmp_path / "office31" / "amazon" / "images" / "mug" / "1.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    expect_clear_error(_office_args(tmp_path / "office31", tmp_path / "run"), "cannot read image", "mug/1.jpg")


def test_a_truncated_bundle(bundle, tmp_path):
    (tmp_path / "cut").mkdir()
    data = (bundle / "digits_real.npz").read_bytes()
    (tmp_path / "cut" / "digits_real.npz").write_bytes(data[: len(data) // 2])
    expect_clear_error(train_args(tmp_path / "cut", tmp_path / "run"), "not a readable digit bundle")


def test_a_missing_bundle(tmp_path):
    expect_clear_error(train_args(tmp_path / "nowhere", tmp_path / "run"), "digits_real.npz was not found")


def test_an_all_black_target_trains_and_reports(tmp_path):
    "Not an error: a degenerate target still trains, records finite features and draws its report."
    black = write_bundle(tmp_path / "black", usps_x=np.zeros((260, 16, 16), np.uint8))
    code, err, escaped = run_cli(train_args(black, tmp_path / "run"))
    assert code == 0 and escaped is None, err
    assert (tmp_path / "run" / "report.html").is_file()
    assert np.isfinite(RunRecord.open(tmp_path / "run").record(2).target_feat[0].astype(np.float32)).all()


@pytest.mark.filterwarnings("always:the target test split has only")
def test_a_tiny_test_split_warns_in_the_command_and_in_run_json(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(sdrc.data, "TRAIN_SIZES", {"mnist": 250, "usps": 250, "mnistm": 250})  # 10 test images
    code, err, escaped = run_cli(train_args(bundle, tmp_path / "run"))
    assert code == 0 and escaped is None
    assert "sdrc: warning: the target test split has only 10 image(s)" in err
    assert "only 10 image(s)" in RunRecord.open(tmp_path / "run").meta["warnings"][0]


def test_a_target_of_one_class_warns_that_its_accuracy_says_little(tmp_path):
    "Every USPS image labelled 3: the run trains, and the command and run.json say what its accuracy can mean."
    folder = _bundle_with(tmp_path, usps_y=np.full(260, 3, np.uint8))
    code, err, escaped = run_cli(train_args(folder, tmp_path / "run"))
    assert code == 0 and escaped is None
    assert "sdrc: warning: every image of the target test split is labelled '3'" in err
    assert any("labelled '3'" in w for w in RunRecord.open(tmp_path / "run").meta["warnings"])


def test_recorded_p_hat_uses_the_runs_own_kernel(bundle, tmp_path):
    "Not silently the default kernel: p-hat in the record is what the loss saw, for alpha and sum normalisation."
    out = tmp_path / "run"
    code, err, _ = run_cli(train_args(bundle, out, "--set", "alpha=0.5", "--set", "kernel_norm=sum"))
    assert code == 0, err
    record = RunRecord.open(out).record(2)
    for j in range(record.num_spaces):
        expected = soft_assignment(torch.from_numpy(record.target_feat[j].astype(np.float32)),
                                   torch.from_numpy(record.centres[j]), alpha=0.5, norm="sum").numpy()
        np.testing.assert_allclose(record.target_phat[j], expected, atol=2e-3)


# ---------------------------------------------------------------- resume

def test_resume_on_another_pair(bundle, finished, tmp_path):
    run = copy_of(finished, tmp_path)
    before = (run / "epoch_001.npz").read_bytes()
    expect_clear_error(train_args(bundle, run, "--source", "usps", "--target", "mnist", "--resume"),
                       "it was trained on other data", "source_train (name mnist/train → usps/train")
    assert (run / "epoch_001.npz").read_bytes() == before  # nothing was overwritten


def test_resume_after_changing_the_target_to_colour(bundle, finished, tmp_path):
    expect_clear_error(train_args(bundle, copy_of(finished, tmp_path), "--target", "mnistm", "--resume"),
                       "it was trained on other data")


def test_resume_under_another_recipe(bundle, finished, tmp_path):
    expect_clear_error(train_args(bundle, copy_of(finished, tmp_path), "--lr", "0.1", "--resume"), "its recipe differs in lr")


def test_resume_of_a_run_whose_checkpoint_was_lost(bundle, finished, tmp_path):
    run = copy_of(finished, tmp_path)
    (run / CHECKPOINT).unlink()
    expect_clear_error(train_args(bundle, run, "--resume"), "checkpoint.pt not found, though", "records 3 epochs")


def test_resume_of_a_folder_that_does_not_exist(bundle, tmp_path):
    expect_clear_error(train_args(bundle, tmp_path / "nowhere", "--resume"), "does not exist: there is no run to resume")
    assert not (tmp_path / "nowhere").exists()


def test_resume_of_a_folder_holding_other_files(bundle, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    expect_clear_error(train_args(bundle, tmp_path, "--resume"), "holds files that are not a sdrc run's (notes.txt)")


def test_resume_of_a_run_stopped_in_its_first_epoch_starts_it_again(bundle, finished, tmp_path):
    "No checkpoint yet: the run starts again in its folder and says so; another recipe is refused, not overwritten."
    run = copy_of(finished, tmp_path)
    (run / CHECKPOINT).unlink()
    for name in ("epoch_001.npz", "epoch_002.npz"):
        (run / name).unlink()
    data = json.loads((run / "run.json").read_text())
    data["epochs"] = data["epochs"][:1]
    (run / "run.json").write_text(json.dumps(data))
    expect_clear_error(train_args(bundle, run, "--resume", "--lr", "0.5"), "holds another run (its config differ)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(train_args(bundle, run, "--resume"))
    assert code == 0 and "has no checkpoint yet (the run stopped in its first epoch): starting it again there" in out.getvalue()
    assert RunRecord.open(run).epoch_numbers() == [0, 1, 2] and (run / CHECKPOINT).exists()


def damage_checkpoint(run: Path, change) -> None:
    state = load_checkpoint(run / CHECKPOINT)
    change(state)
    torch.save(state, run / CHECKPOINT)


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.pop("model"), "'model' should be a dict"),
    (lambda s: s.pop("optimizer"), "'optimizer' should be a dict"),
    (lambda s: s.update(next_epoch=10**9), "next_epoch 1000000000 is outside this run of 2 epochs"),
    (lambda s: s.update(next_epoch=0), "next_epoch 0 is outside"),
    (lambda s: s.update(next_epoch=True), "'next_epoch' should be a int"),
    (lambda s: s["model"].update({k: torch.zeros(3) for k in list(s["model"])[:1]}), "does not fit this run's network"),
    (lambda s: s["centres"].clear(), "does not fit this run's network"),
    (lambda s: s.update(centre_grads=[torch.zeros(2)]), "does not fit this run's network"),
    (lambda s: next(iter(s["model"].values())).fill_(float("nan")), "holds weights that are not finite"),
    (lambda s: s["centres"].update({k: v * float("inf") for k, v in s["centres"].items()}), "not finite (centres."),
    (lambda s: next(iter(s["optimizer"]["state"].values())).update(momentum_buffer=torch.zeros(3, 3)),
     "the optimizer's momentum_buffer has shape (3, 3)"),
    (lambda s: s["optimizer"]["param_groups"][0].update(lr="0.01"), "the optimizer's settings are not numbers"),
], ids=["no model", "no optimizer", "next epoch 1e9", "next epoch 0", "next epoch bool", "wrong shape",
        "no centres", "centre gradients", "NaN weights", "infinite centres", "optimizer state of another shape",
        "a string for the learning rate"])
def test_a_damaged_checkpoint(bundle, finished, tmp_path, change, fragment):
    run = copy_of(finished, tmp_path)
    damage_checkpoint(run, change)
    expect_clear_error(train_args(bundle, run, "--resume"), fragment)


def test_a_crafted_checkpoint_runs_no_code(bundle, finished, tmp_path):
    run = copy_of(finished, tmp_path)
    torch.save({"model": Path("/etc/passwd")}, run / CHECKPOINT)
    expect_clear_error(train_args(bundle, run, "--resume"), "could not be loaded")


def test_a_truncated_checkpoint(bundle, finished, tmp_path):
    run = copy_of(finished, tmp_path)
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[: len(data) // 3])
    expect_clear_error(train_args(bundle, run, "--resume"), "could not be loaded")


# ---------------------------------------------------------------- run records read by info and report

def damage_run_json(run: Path, change) -> None:
    data = json.loads((run / "run.json").read_text())
    change(data)
    (run / "run.json").write_text(json.dumps(data))


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(epochs="x"), "'epochs' should be a list"),
    (lambda d: d.update(epochs=[{"acc_f": 1}]), "each with its epoch number"),
    (lambda d: d.update(config=[1, 2]), "'config' should be an object"),
    (lambda d: d.update(classes="0123456789"), "'classes' should be a list of class names"),
    (lambda d: d.update(classes=[0, 1]), "'classes' should be a list of class names"),
    (lambda d: d.update(format_version=0), "no valid format_version"),
    (lambda d: d.update(format_version=-5), "no valid format_version"),
    (lambda d: d.update(format_version=True), "no valid format_version"),
    (lambda d: d.update(format_version=99), "newer than this sdrc reads"),
], ids=["epochs str", "epochs without numbers", "config list", "classes str", "classes ints", "version 0",
        "version -5", "version true", "version 99"])
@pytest.mark.parametrize("command", ["info", "report"])
def test_a_damaged_run_json(finished, tmp_path, change, fragment, command):
    run = copy_of(finished, tmp_path)
    damage_run_json(run, change)
    expect_clear_error([command, str(run)], fragment)


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.pop("target_q"), "missing target_q"),
    (lambda a: a.update(target_p=np.ones((3, 3))), "'target_p' has 3 rows, expected 30 (target)"),
    (lambda a: a.update(target_q=np.ones((30, 4))), "'target_q' should be 30×10"),
    (lambda a: a.update(centres_1=np.ones((4, 128))), "'centres_1' has 4 rows"),
    (lambda a: a.update(target_y=np.array(["a"] * 30)), "'target_y' should be a numeric array"),
], ids=["missing", "wrong rows", "wrong width", "wrong centres", "strings"])
def test_a_damaged_epoch_record(finished, tmp_path, change, fragment):
    run = copy_of(finished, tmp_path)
    with np.load(run / "epoch_001.npz") as npz:
        arrays = dict(npz)
    change(arrays)
    np.savez(run / "epoch_001.npz", **arrays)
    expect_clear_error(["report", str(run)], "epoch_001.npz", fragment)


def test_a_truncated_epoch_record(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    (run / "epoch_002.npz").write_bytes((run / "epoch_002.npz").read_bytes()[:100])
    expect_clear_error(["report", str(run)], "epoch_002.npz could not be read")


def test_report_into_a_folder(finished, tmp_path):
    expect_clear_error(["report", str(finished), "--out", str(tmp_path)], "a folder stands where a file should be")


@pytest.mark.parametrize("command", ["info", "report", "select"])
def test_a_folder_that_is_not_a_run(tmp_path, command):
    expect_clear_error([command, str(tmp_path)], "run.json not found", str(tmp_path))


def test_the_layout_cache_follows_the_records_content(finished, tmp_path):
    "A cache keyed on epoch numbers would draw changed records from a stale layout; it is keyed on their content."
    from sdrc.viz import embed_run
    run = copy_of(finished, tmp_path)
    before = embed_run(run, space=1, method="pca", progress=False).coords
    with np.load(run / "epoch_002.npz") as npz:
        arrays = dict(npz)
    arrays["target_feat_1"] = (arrays["target_feat_1"].astype(np.float32)[::-1] * 3).astype(np.float16)
    np.savez(run / "epoch_002.npz", **arrays)
    after = embed_run(run, space=1, method="pca", progress=False).coords
    np.testing.assert_array_equal(after[:2], before[:2])  # unchanged epochs come from the cache
    assert not np.allclose(after[2], before[2])


# ---------------------------------------------------------------- a run recorded from the user's own loop

def expect_api_error(call, *fragments: str) -> str:
    "Assert that `call()` raises one clear ValueError or TypeError of one line holding every fragment."
    TALLY["tried"] += 1
    try:
        call()
    except (ValueError, TypeError, FileExistsError) as err:
        text = str(err)
        kind = "clear error" if text and "\n" not in text else "traceback"
    except BaseException as err:  # noqa: BLE001 - the point is to see what escapes
        kind, text = "traceback", f"{type(err).__name__}: {err}"
    else:
        kind, text = "silent", "no error"
    TALLY[kind] += 1
    assert kind == "clear error", text
    for fragment in fragments:
        assert fragment in text, text
    return text


def _loop_inputs(n_s: int = 40, n_t: int = 30, k: int = 3, dims=(6, 4), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    source = ([torch.randn(n_s, d, generator=g) for d in dims], torch.randint(0, k, (n_s,), generator=g))
    target = ([torch.randn(n_t, d, generator=g) for d in dims], torch.randn(n_t, k, generator=g))
    return source, target


@pytest.fixture
def recorder(tmp_path):
    from sdrc.record import Recorder
    rec = Recorder(tmp_path / "mine", classes=["a", "b", "c"], method="my loop", samples=20)
    source, target = _loop_inputs()
    rec.epoch(0, source=source, target=target)
    yield rec
    rec.close()


@pytest.mark.parametrize("change, fragments", [
    (lambda s, t: ((s[0], s[1][:-1]), t), ["source labels", "(39,) labels for 40 points"]),
    (lambda s, t: ((s[0], s[1].float()), t), ["source labels must be integers"]),
    (lambda s, t: (s, ([t[0][0].masked_fill(t[0][0] > 1, float("nan")), t[0][1]], t[1])), ["target features, space 0 contain NaN"]),
    (lambda s, t: ((s[0], s[1] + 5), t), ["outside the 3 classes given"]),
    (lambda s, t: (s, (t[0], torch.randn(30, 5))), ["target logits have 5 columns, but 3 classes were given"]),
    (lambda s, t: (s, ([t[0][0], torch.randn(30, 9)], t[1])), ["space 1: source features have 4 dimensions, target features 9"]),
    (lambda s, t: ((s[0][:1], s[1]), t), ["the source has 1 feature spaces and the target 2"]),
    (lambda s, t: (s, ([z[:20] for z in t[0]], t[1][:20])), ["the target has 20 points in epoch 1, 30 before"]),
    (lambda s, t: (s[0][0], t), ["`source` must be a pair (features, labels)"]),
])
def test_a_recorded_epoch_with_bad_input(recorder, change, fragments):
    source, target = _loop_inputs(seed=1)
    source, target = change(source, target)
    expect_api_error(lambda: recorder.epoch(1, source=source, target=target), *fragments)


def test_a_recorded_epoch_that_goes_backwards_or_changes_width(recorder):
    source, target = _loop_inputs(seed=1)
    expect_api_error(lambda: recorder.epoch(0, source=source, target=target), "epoch 0 was given after epoch 0")
    recorder.epoch(1, source=source, target=target)
    wider_s, wider_t = _loop_inputs(seed=2, dims=(6, 8))
    expect_api_error(lambda: recorder.epoch(2, source=wider_s, target=wider_t), "space 1 has 8 features in epoch 2, 4 before")
    expect_api_error(lambda: recorder.epoch(2, source=source, target=target, target_labels=torch.arange(30)),
                     "target labels run from 0 to 29, outside the 3 classes given")


def test_a_recorder_claims_its_folder_like_the_trainer(recorder, tmp_path):
    from sdrc.record import Recorder
    expect_api_error(lambda: Recorder(recorder.folder, classes=["a", "b", "c"]), "is being written by another process")
    recorder.close()
    expect_api_error(lambda: Recorder(recorder.folder, classes=["a", "b", "c"]), "exists and is not empty")
    expect_api_error(lambda: Recorder(tmp_path / "other", classes=["a", "a"]), "each once")


def test_ctrl_c_says_where_the_run_stopped_and_how_to_continue(bundle, tmp_path, monkeypatch):
    "Ctrl-C in the second epoch: one line with the epoch and the command; the same command with --resume finishes it."
    from sdrc.train import Trainer
    real, calls = Trainer.train_epoch, {"n": 0}

    def interrupted(self, obs, epoch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, obs, epoch)
    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    out = tmp_path / "run"
    code, err, escaped = run_cli(train_args(bundle, out))
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("sdrc: warning:", "  "))
             and "it/s]" not in line and "s/it]" not in line and not line.strip().startswith("[A")]
    TALLY["tried"] += 1
    TALLY["clear error" if code == 130 and escaped is None and len(lines) == 1 else "traceback"] += 1
    assert code == 130 and escaped is None and len(lines) == 1, err
    assert "stopped in epoch 1 of 2" in err and f"--out {out} --resume" in err and "Traceback" not in err
    monkeypatch.setattr(Trainer, "train_epoch", real)
    code, err, escaped = run_cli(train_args(bundle, out, "--resume"))
    assert code == 0 and RunRecord.open(out).epoch_numbers() == [0, 1, 2]


def test_an_explorer_of_a_run_without_records_or_with_too_few_class_names(bundle, finished, tmp_path):
    from sdrc.explorer import ClusterExplorer
    metrics_only = tmp_path / "metrics"
    code, err, escaped = run_cli(train_args(bundle, metrics_only, "--record-samples", "0"))
    assert code == 0, err
    expect_api_error(lambda: ClusterExplorer(metrics_only, method="pca"), "has no recorded epochs to show")
    run = copy_of(finished, tmp_path)
    data = json.loads((run / "run.json").read_text())
    data["classes"] = data["classes"][:3]
    (run / "run.json").write_text(json.dumps(data))
    expect_api_error(lambda: ClusterExplorer(run, method="pca"), "run.json names 3 classes but its records hold 10")


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(data="mnist"), "'data' should be an object describing each split"),
    (lambda d: d["epochs"].append(dict(d["epochs"][0])), "are not unique and increasing"),
    (lambda d: d["epochs"][1].update(acc_f=1e308), "epoch 1's acc_f is 1e+308, which no run can record"),
    (lambda d: d["epochs"][1].update(cluster_acc=-5), "epoch 1's cluster_acc is -5"),
])
def test_metrics_no_run_can_record(finished, tmp_path, change, fragment):
    run = copy_of(finished, tmp_path)
    data = json.loads((run / "run.json").read_text())
    change(data)
    (run / "run.json").write_text(json.dumps(data))
    expect_clear_error(["info", str(run)], fragment)


def test_a_run_json_nested_too_deeply(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    expect_clear_error(["info", str(run)], "nested too deeply")


@pytest.mark.parametrize("key, change, fragment", [
    ("target_pred", lambda a: a + 99, "'target_pred' should hold classes 0 to 9"),
    ("target_p", lambda a: -a, "'target_p' should hold probabilities"),
    ("centres_0", lambda a: a * np.nan, "'centres_0' holds values that are not finite"),
    ("target_p", lambda a: a[:-3], "'target_p' has 27 rows"),
    ("target_feat_1", lambda a: a[:, :-1], "'target_feat_1' has"),
])
def test_records_no_run_can_write(finished, tmp_path, key, change, fragment):
    run = copy_of(finished, tmp_path)
    with np.load(run / "epoch_001.npz") as npz:
        arrays = dict(npz)
    arrays[key] = change(arrays[key])
    np.savez(run / "epoch_001.npz", **arrays)
    expect_clear_error(["report", str(run), "--layout", "pca"], "epoch_001.npz", fragment)


def test_records_of_another_width_than_the_runs(finished, tmp_path):
    "One epoch's record consistent in itself but narrower in space 1 than the others: named, not concatenated blindly."
    run = copy_of(finished, tmp_path)
    with np.load(run / "epoch_001.npz") as npz:
        arrays = {key: (a[:, :-1] if key.endswith("_1") and "phat" not in key else a) for key, a in npz.items()}
    np.savez(run / "epoch_001.npz", **arrays)
    expect_clear_error(["report", str(run), "--layout", "pca"], "epoch_001.npz", "features per row", "other epochs")


def test_a_record_holding_python_objects_gives_no_pickle_advice(finished, tmp_path):
    run = copy_of(finished, tmp_path)
    np.savez(run / "epoch_001.npz", target_p=np.array([{"x": 1}], dtype=object))
    text = expect_clear_error(["report", str(run)], "holds Python objects, which sdrc never loads")
    assert "allow_pickle" not in text


def test_a_run_on_a_read_only_disk_can_be_reported_elsewhere(finished, tmp_path, monkeypatch):
    "The layout cache cannot be written into the run folder (a read-only disk): the report is still written elsewhere."
    import sdrc.viz
    run = copy_of(finished, tmp_path)

    def read_only(path, arrays):
        if Path(path).parent == run:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, arrays)
    real = sdrc.viz.write_arrays
    monkeypatch.setattr(sdrc.viz, "write_arrays", read_only)
    code, err, escaped = run_cli(["report", str(run), "--layout", "pca", "--out", str(tmp_path / "r.html")])
    assert code == 0 and escaped is None and (tmp_path / "r.html").is_file(), err
    assert not list(run.glob("embedding_pca_*"))


def _feature_file(path: Path, **changes) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    arrays = dict(source_features=np.eye(3)[y] * 3 + rng.normal(size=(60, 3)), source_labels=y,
                  target_features=np.eye(3)[y] * 3 + 1 + rng.normal(size=(60, 3)), target_labels=y,
                  classes=np.array(["a", "b", "c"]))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_training_on_a_feature_file(tmp_path):
    code, err, escaped = run_cli(["train", "--features", str(_feature_file(tmp_path / "f.npz")), "--epochs", "2",
                                  "--batch-size", "16", "--threads", "1", "--out", str(tmp_path / "run"), "--no-report"])
    assert code == 0 and escaped is None, err
    run = RunRecord.open(tmp_path / "run")
    assert run.meta["classes"] == ["a", "b", "c"] and run.epochs[-1]["acc_f"] > 0.5


def test_training_on_features_without_target_labels(tmp_path, capsys):
    path = _feature_file(tmp_path / "f.npz", target_labels=None)
    code, err, escaped = run_cli(["train", "--features", str(path), "--epochs", "2", "--batch-size", "16", "--threads", "1",
                                  "--out", str(tmp_path / "run"), "--no-report"])
    assert code == 0 and escaped is None, err
    run = RunRecord.open(tmp_path / "run")
    assert all("acc_f" not in m and "score_im" in m for m in run.epochs)
    assert run.record(run.epoch_numbers()[-1]).target_y is None
    code, err, escaped = run_cli(["select", str(tmp_path / "run")])
    assert code == 0 and escaped is None, err


@pytest.mark.parametrize("changes, fragment", [
    (dict(classes=None), "needs 'classes'"),
    (dict(source_labels=None), "has no 'source_labels'"),
    (dict(source_labels=np.arange(60) % 3 + 5), "'source_labels' run from 5 to 7, outside the 3 classes"),
    (dict(target_features=np.full((60, 3), np.nan)), "'target_features' holds values that are not finite"),
    (dict(target_features=np.ones((60, 4))), "source features have 3 dimensions, target features 4"),
    (dict(source_labels=np.arange(59) % 3), "'source_labels' should hold one integer class per row"),
])
def test_a_feature_file_that_does_not_fit(tmp_path, changes, fragment):
    path = _feature_file(tmp_path / "f.npz", **changes)
    expect_clear_error(["train", "--features", str(path), "--epochs", "2", "--out", str(tmp_path / "run")], fragment)
