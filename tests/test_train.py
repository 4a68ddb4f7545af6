"""Tests of sdrc.train: configuration, every method on toy domains, records, checkpoints, exact resume, real digits."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from sdrc.data import DomainPair, TensorDomain, digit_pair, make_domain_pair
from sdrc.observe import Extracted, Observation, epoch_metrics, evaluation_view
from sdrc.recipe import Recipe, Runtime
from sdrc.snapshots import RunRecord
from sdrc.train import CHECKPOINT, Trainer, load_checkpoint, random_colour, random_shift, summary_line, train

QUIET = Runtime(progress=False, log=None, workers=0)


@pytest.fixture(scope="module")
def toy():
    return make_domain_pair(n_per_class=40, num_classes=3, dim=4, shift="translate", amount=1.0, seed=0)


def small(**kw):
    return Recipe(**{**dict(epochs=3, batch_size=32, record_samples=50, seed=0), **kw})


def test_the_epochs_bar_ends_full(toy, capsys):
    "The bar counts every observation, the last (observed, not trained) included: a finished run shows 4/4, not 3/4."
    train(toy, small(), Runtime(progress=True, log=None, workers=0))
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("epochs:")]
    assert bars and "4/4" in bars[-1] and "100%" in bars[-1], bars[-1:]


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("kwargs, message", [
    (dict(method="mcd"), "unknown method 'mcd'"),
    (dict(ablation="no-q"), "unknown ablation 'no-q'"),
    (dict(preset="tllib"), "unknown preset 'tllib'"),
    (dict(overrides={"detach": True}), "unknown SDRC option(s) detach"),
    (dict(epochs=0), "`epochs` must be a positive integer"),
    (dict(epochs=2.5), "`epochs` must be a positive integer"),
    (dict(batch_size=-1), "`batch_size` must be a positive integer"),
    (dict(lr=0.0), "`lr` must lie in (0, inf]"),
    (dict(lr=float("nan")), "`lr` must be a finite number"),
    (dict(momentum=1.5), "`momentum` must lie in [0, 1]"),
    (dict(record_samples=-1), "`record_samples` must be an integer ≥ 0"),
    (dict(colour_augment="yes"), "`colour_augment` must be True or False"),
    (dict(lam_schedule="cosine"), "unknown lam_schedule 'cosine'"),
])
def test_bad_recipe(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Recipe(**kwargs)


def test_schedules():
    assert Recipe(preset="official", epochs=10).lam(0) == 0.0
    assert Recipe(preset="paper", epochs=10).lam(0) == 1.0
    assert Recipe(preset="paper", lam_schedule="rampup", epochs=10).lam(0) == 0.0
    assert Recipe(lr=0.01, epochs=10).learning_rate(0) == 0.01
    assert Recipe(lr=0.01, epochs=10).learning_rate(5) == pytest.approx(0.01 / 6 ** 0.75)


def test_the_loss_configuration_is_resolved_once():
    "The recipe's `loss` is the SDRCConfig of preset, overrides and ablation; the trainer's loss uses that very one."
    recipe = Recipe(preset="paper", overrides=dict(alpha=2.0), ablation="no-soft-select")
    assert recipe.loss.alpha == 2.0 and recipe.loss.soft_select is False and recipe.loss.q_scope == "dataset"
    toy = make_domain_pair(n_per_class=20, num_classes=3, dim=4, seed=0)
    from dataclasses import replace
    assert Trainer(toy, recipe, QUIET).loss_fn.config == replace(recipe.loss, check_inputs=False)  # the trainer checks the loss


# ---------------------------------------------------------------- methods on toy domains

@pytest.mark.parametrize("method, preset, ablation", [
    ("srdc", "official", "none"), ("srdc", "paper", "none"), ("srdc", "paper", "no-source-reg"),
    ("srdc", "paper", "no-feature"), ("srdc", "paper", "no-soft-select"),
    ("source-only", "paper", "none"), ("dann", "paper", "none"), ("oracle", "paper", "none"),
])
def test_every_method_trains_and_reports(toy, method, preset, ablation):
    history = train(toy, small(method=method, preset=preset, ablation=ablation), QUIET)
    assert [m["epoch"] for m in history] == [0, 1, 2, 3]
    last = history[-1]
    for key in ("acc_f", "acc_f_train", "cluster_acc", "nmi", "entropy_p", "entropy_q", "marginal_q", "collapsed"):
        assert key in last
    assert all(np.isfinite(last[k]) for k in ("acc_f", "entropy_p", "entropy_q", "train_src_out"))
    assert "acc_centre_0" in last and "acc_centre_1" in last  # the nearest-centre classifier, for every method
    if method == "srdc":
        assert ("train_tgt_feat_0" in last) == (ablation != "no-feature")
    if method == "srdc" and ablation == "no-source-reg":
        assert "train_src_feat_0" not in last and "train_tgt_feat_0" in last
    if method == "dann":
        assert "train_domain" in last


EVERY_METHOD = [("srdc", "official", "none"), ("srdc", "paper", "none"), ("srdc", "paper", "no-source-reg"),
                ("srdc", "paper", "no-feature"), ("srdc", "paper", "no-soft-select"), ("srdc", "paper", "no-source-terms"),
                ("source-only", "paper", "none"), ("dann", "paper", "none"), ("oracle", "paper", "none")]


@pytest.mark.parametrize("method, preset, ablation", EVERY_METHOD)
def test_a_gpu_epoch_makes_the_host_wait_a_fixed_number_of_times(monkeypatch, host_waits, method, preset, ablation):
    "On a GPU the loss is checked once per epoch, not per step: no step may read a value back. Four times the steps, same waits."
    import sdrc.train as T
    from sdrc.observe import observe
    monkeypatch.setattr(T, "checks_each_step", lambda device: False)  # the GPU's way of checking, here on the CPU
    waits = []
    for n_per_class in (16, 64):  # 3 and 12 steps of 16 per domain
        pair = make_domain_pair(n_per_class=n_per_class, num_classes=3, dim=4, shift="translate", amount=1.0, seed=0)
        recipe = Recipe(method=method, preset=preset, ablation=ablation, epochs=3, batch_size=16, record_samples=0,
                        warmup_epochs=0)
        trainer = Trainer(pair, recipe, QUIET)
        obs = observe(trainer.model, trainer.domains, 0, recipe)
        trainer.train_epoch(obs, 0)
        waits.append(host_waits(lambda: trainer.train_epoch(obs, 1)))
    assert waits[0] == waits[1], f"{waits[0]} waits in 3 steps, {waits[1]} in 12: something reads a value back at every step"


def test_training_learns_the_toy_task(toy):
    for method in ("source-only", "oracle", "srdc"):
        history = train(toy, small(method=method, preset="official", epochs=6), QUIET)
        assert history[-1]["acc_f"] > 0.9, (method, history[-1]["acc_f"])


def test_same_seed_same_run_bit_for_bit(toy):
    a = train(toy, small(preset="official"), QUIET)
    b = train(toy, small(preset="official"), QUIET)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert strip(a) == strip(b)
    c = train(toy, small(preset="official", seed=1), QUIET)
    assert strip(a) != strip(c)


# ---------------------------------------------------------------- records and checkpoints

def test_records_on_disk(toy, tmp_path):
    train(toy, small(preset="paper"), QUIET, out=tmp_path / "run")
    run = RunRecord.open(tmp_path / "run")
    assert run.epoch_numbers() == [0, 1, 2, 3] and len(run.epochs) == 4
    assert run.meta["config"]["preset"] == "paper" and "torch" in run.meta["versions"]
    assert run.meta["loss"]["q_scope"] == "dataset" and run.meta["runtime"]["workers"] == 0
    record = run.record(3)
    n = min(50, len(toy.target_train))
    assert record.target_feat[0].shape == (n, 64) and record.target_feat[0].dtype == np.float16
    assert record.target_p.shape == record.target_q.shape == record.target_phat[1].shape == (n, 3)
    assert record.centres[1].shape == (3, 32) and record.source_weight.dtype == np.float16
    assert record.target_phat[1].dtype == np.float32  # nearly uniform: float16 would tie
    assert np.array_equal(record.target_index, run.record(0).target_index)  # the same samples every epoch
    assert np.array_equal(record.target_y, toy.target_train.y[record.target_index].numpy())
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["next_epoch"] == 3


def test_existing_folder_is_not_overwritten(toy, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        train(toy, small(), QUIET, out=tmp_path / "run")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_crafted_checkpoint_is_refused(tmp_path):
    "A checkpoint that needs arbitrary unpickling (it could run code) is refused."
    torch.save({"model": Payload()}, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="could not be loaded"):
        load_checkpoint(tmp_path / CHECKPOINT)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        load_checkpoint(tmp_path / "absent.pt")


class Stop(Exception):
    pass


class Payload:
    "An arbitrary class: unpickling it means importing and constructing code of the file's choosing."


def _stopping_at(n: int):
    "A `Trainer.step` that raises `Stop` at its n-th call."
    step, calls = Trainer.step, {"n": 0}

    def stopping_step(self, loss):
        calls["n"] += 1
        if calls["n"] == n:
            raise Stop
        step(self, loss)
    return stopping_step


def test_resume_after_a_stop_mid_epoch_ends_identically(toy, tmp_path, monkeypatch):
    cfg = small(preset="official", epochs=4)
    straight = train(toy, cfg, QUIET, out=tmp_path / "a")
    monkeypatch.setattr(Trainer, "step", _stopping_at(6))  # epoch 1 has 4 iterations: stop in the middle of epoch 1
    with pytest.raises(Stop):
        train(toy, cfg, QUIET, out=tmp_path / "b")
    monkeypatch.undo()
    assert RunRecord.open(tmp_path / "b").epoch_numbers() == [0, 1]
    resumed = train(toy, cfg, QUIET, out=tmp_path / "b", resume=True)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert strip(resumed) == strip(straight)
    assert strip(RunRecord.open(tmp_path / "b").epochs) == strip(RunRecord.open(tmp_path / "a").epochs)
    a, b = RunRecord.open(tmp_path / "a").record(4).to_arrays(), RunRecord.open(tmp_path / "b").record(4).to_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_run_trained_on_cuda_resumes_where_there_is_no_gpu(toy, tmp_path, monkeypatch):
    """A checkpoint whose tensors are marked as CUDA ones (as a GPU run writes them) resumes on the CPU and ends as the
    uninterrupted run. The marks are real: torch refuses such a file without a map_location on a machine with no GPU."""
    import pickle
    import torch.serialization
    from sdrc.io import write_torch
    cfg = small(epochs=3)
    straight = train(toy, cfg, QUIET, out=tmp_path / "straight")
    monkeypatch.setattr(Trainer, "step", _stopping_at(7))  # 4 steps an epoch: stopped in the middle of epoch 1
    with pytest.raises(Stop):
        train(toy, cfg, QUIET, out=tmp_path / "run")
    monkeypatch.undo()
    checkpoint = tmp_path / "run" / CHECKPOINT
    with monkeypatch.context() as m:  # written again as from a GPU: every storage tagged cuda:0
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        write_torch(checkpoint, load_checkpoint(checkpoint))
    if not torch.cuda.is_available():  # torch 2.4 says so with an UnpicklingError, later releases with a RuntimeError
        with pytest.raises((RuntimeError, pickle.UnpicklingError), match="CUDA"):
            torch.load(checkpoint, weights_only=True)
    resumed = train(toy, cfg, QUIET, out=tmp_path / "run", resume=True)
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert strip(resumed) == strip(straight)


def test_resume_with_another_recipe_is_refused(toy, tmp_path):
    train(toy, small(epochs=2), QUIET, out=tmp_path / "run")
    with pytest.raises(ValueError, match="recipe differs in lr"):
        train(toy, small(epochs=2, lr=0.1), QUIET, out=tmp_path / "run", resume=True)


def test_resume_under_another_runtime_works(toy, tmp_path, monkeypatch):
    """Loader processes, progress display and threads are runtime settings: a resume may change them. With the same
    thread count it ends bit for bit as the uninterrupted run; another thread count may round differently."""
    cfg = small(preset="official", epochs=3)
    straight = train(toy, cfg, QUIET, out=tmp_path / "a")
    step = Trainer.step
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    for folder, resumed_runtime in (("b", Runtime(progress=True, log=None, workers=3)), ("c", Runtime(log=None, threads=1))):
        calls = {"n": 0}

        def stopping_step(self, loss):
            calls["n"] += 1
            if calls["n"] == 6:
                raise Stop
            step(self, loss)
        monkeypatch.setattr(Trainer, "step", stopping_step)
        with pytest.raises(Stop):
            train(toy, cfg, QUIET, out=tmp_path / folder)
        monkeypatch.setattr(Trainer, "step", step)
        resumed = train(toy, cfg, resumed_runtime, out=tmp_path / folder, resume=True)
        assert [m["epoch"] for m in resumed] == [0, 1, 2, 3]
        if folder == "b":
            assert strip(resumed) == strip(straight)


def test_library_and_command_line_defaults_agree():
    "One set of defaults: every train option of the CLI defaults to the Recipe's or Runtime's value."
    from sdrc.cli import build_parser, train_settings
    parser = build_parser()
    args = parser.parse_args(["train"])
    recipe, runtime = Recipe(), Runtime()
    for name in ("method", "ablation", "epochs", "batch_size", "lr", "seed", "record_samples"):
        assert getattr(args, name) == getattr(recipe, name), name
    assert args.preset is None and train_settings(args, parser)[0].preset == recipe.preset  # unset: the library's preset
    for name in ("device", "workers", "threads", "compile"):
        assert getattr(args, name) == getattr(runtime, name), name


def test_a_pretrained_backbone_learns_at_a_tenth_from_python_and_from_the_command_line(tmp_path, monkeypatch):
    "The multiplier comes from the network, so `train(benchmark_pair(...))` and `sdrc train --benchmark` agree."
    import torchvision.models
    import sdrc.cli as cli
    from sdrc.train import default_model
    untrained = torchvision.models.resnet50
    monkeypatch.setattr(torchvision.models, "resnet50", lambda weights=None: untrained(weights=None))  # no download
    images = _images_on_disk(tmp_path, _random_images(6, 3, 0, "src"), "src")
    pair = DomainPair(images, images, images, images, images.classes)
    from_python = Trainer(pair, small(epochs=1), QUIET)  # the default network of images on disk: ImageNet ResNet-50
    assert isinstance(default_model(pair), type(from_python.model)) and from_python.optimizer.param_groups[0]["mult"] == 0.1
    monkeypatch.setattr(cli, "benchmark_pair", lambda *args: pair)
    args = cli.build_parser().parse_args(["train", "--benchmark", "office31", "--data", "x", "--source", "A", "--target", "W"])
    _, model = cli._train_pair(args)
    assert Trainer(pair, small(epochs=1), QUIET, model=model).optimizer.param_groups[0]["mult"] == 0.1
    args = cli.build_parser().parse_args(["train", "--benchmark", "office31", "--data", "x", "--no-pretrained"])
    assert cli._train_pair(args)[1].backbone_lr_mult == 1.0  # from scratch: the full rate


# ---------------------------------------------------------------- observation

def test_collapse_is_detected_and_reported():
    k, n = 3, 30
    y = torch.arange(n) % k
    collapsed_logits = torch.zeros(n, k)
    collapsed_logits[:, 0] = 5.0
    feats = [torch.randn(n, 4)]
    source = Extracted(feats, torch.randn(n, k), y)
    target = Extracted(feats, collapsed_logits, y)
    p = torch.softmax(collapsed_logits, 1)
    centroids = [torch.randn(k, 4)]
    obs = Observation(0, source, target, target, centroids, [y], centroids, None, p, [p], [p, p], torch.rand(n))
    metrics = epoch_metrics(obs, collapse_threshold=0.5)
    assert metrics["collapsed"] and metrics["largest_pred"] == 1.0
    assert "COLLAPSE: 100% of the target in one class" in summary_line(0, metrics)


# ---------------------------------------------------------------- real digits, at a small size

def _subset(domain, n):
    return TensorDomain(domain.x[:n], domain.y[:n], domain.name, domain.classes)


def test_srdc_on_real_digits_smoke(digits_root, tmp_path):
    pair = digit_pair("mnist", "usps", root=digits_root, channels=1)
    small_pair = DomainPair(*(_subset(d, 512) for d in pair.splits().values()), pair.classes)
    history = train(small_pair, Recipe(preset="official", epochs=2, record_samples=100), QUIET, out=tmp_path / "m2u")
    assert history[-1]["acc_f"] > history[0]["acc_f"] and history[-1]["acc_f"] > 0.3
    assert RunRecord.open(tmp_path / "m2u").record(2).target_feat[0].shape == (100, 500)


def test_warmup_trains_the_source_alone(toy):
    history = train(toy, small(preset="paper", warmup_epochs=2), QUIET)
    assert set(k for k in history[1] if k.startswith("train_") and k != "train_seconds") == {"train_src_out"}
    assert set(k for k in history[2] if k.startswith("train_") and k != "train_seconds") == {"train_src_out"}
    assert "train_tgt_out" in history[3]


def test_random_shift_moves_whole_pixels_and_is_seeded():
    x = torch.arange(2 * 36, dtype=torch.float32).view(2, 1, 6, 6)
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= set(x.unique().tolist())  # no blurred values
    shifts = torch.randint(-2, 3, (2, 2), generator=torch.Generator().manual_seed(0))
    for i, (dx, dy) in enumerate(shifts.tolist()):
        assert torch.equal(a[i, 0, 2:4, 2:4], x[i, 0, 2 + dy:4 + dy, 2 + dx:4 + dx])
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_bad_warmup_or_shift():
    with pytest.raises(ValueError, match="`warmup_epochs` must be an integer ≥ 0"):
        Recipe(warmup_epochs=-1)
    with pytest.raises(ValueError, match="`shift_augment` must be an integer ≥ 0"):
        Recipe(shift_augment=1.5)


@given(seed=st.integers(0, 2**31 - 1))
def test_colour_augmentation_keeps_the_digit(seed):
    "Each colour image is scaled per channel by a gain in [0.5, 1.5) and either kept or inverted as a whole."
    x = torch.rand(16, 3, 5, 5) + 0.1
    out = random_colour(x, torch.Generator().manual_seed(seed))
    ratio = out / x
    per_channel = ratio[:, :, :1, :1]
    torch.testing.assert_close(ratio, per_channel.expand_as(ratio))  # one factor per image and channel
    assert ((per_channel.abs() >= 0.5 - 1e-6) & (per_channel.abs() < 1.5)).all()
    signs = per_channel.sign().flatten(1)
    assert (signs == signs[:, :1]).all()  # the whole image is inverted or not


def test_colour_augmentation_leaves_grey_runs_unchanged():
    "On one-channel images the switch changes nothing: the same run with and without it is bit for bit equal."
    g = torch.Generator().manual_seed(0)
    grey = lambda n: TensorDomain(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),  # noqa: E731
                                  torch.arange(n) % 3, "grey", ("a", "b", "c"))
    pair = DomainPair(grey(60), grey(30), grey(60), grey(30), ("a", "b", "c"))
    runs = [train(pair, Recipe(preset="official", epochs=2, batch_size=16, record_samples=0, colour_augment=on), QUIET)
            for on in (True, False)]
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in h]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])


# ---------------------------------------------------------------- images read from disk

def _images_on_disk(folder, domain: TensorDomain, name: str) -> "ImageList":
    "Write `domain`'s uint8 images as PNG files listed in order, and read them back as an ImageList."
    from PIL import Image
    from sdrc.data import ImageList
    lines = []
    for i, (x, y) in enumerate(zip(domain.x, domain.y)):
        path = folder / name / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(path)
        lines.append(f"{name}/{i:04d}.png {int(y)}")
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    as_model_input = lambda img: torch.from_numpy(np.array(img)).permute(2, 0, 1).float().mul_(2 / 255).sub_(1)  # noqa: E731
    return ImageList(folder, domain.classes, folder / f"{name}.txt", transform=as_model_input, name=name)


def _random_images(n: int, classes: int, seed: int, name: str) -> TensorDomain:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = (torch.rand(n, 3, 28, 28, generator=g) * 120 + 40 * y.view(-1, 1, 1, 1)).to(torch.uint8)
    return TensorDomain(x, y, name, ("a", "b", "c"))


def test_images_read_from_disk_train_exactly_like_the_same_images_in_memory(tmp_path):
    from sdrc.models import digit_net
    source, target = _random_images(48, 3, 0, "src"), _random_images(40, 3, 1, "tgt")
    in_memory = DomainPair(source, source, target, target, source.classes)
    on_disk_s, on_disk_t = _images_on_disk(tmp_path, source, "src"), _images_on_disk(tmp_path, target, "tgt")
    on_disk = DomainPair(on_disk_s, on_disk_s, on_disk_t, on_disk_t, source.classes)
    cfg = small(preset="official", epochs=2, batch_size=16, bn_samples=32, shift_augment=0, colour_augment=False,
                record_samples=0)
    runs = []
    for pair in (in_memory, on_disk):
        torch.manual_seed(5)
        trainer = Trainer(pair, cfg, Runtime(progress=False, log=None, threads=1, workers=0), model=digit_net(3, in_channels=3))
        runs.append((trainer.fit(), trainer))
    (history_m, trainer_m), (history_d, trainer_d) = runs
    drop_time = lambda h: [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in h]  # noqa: E731
    assert drop_time(history_m) == drop_time(history_d)
    for a, b in zip(trainer_m.model.state_dict().values(), trainer_d.model.state_dict().values()):
        assert torch.equal(a, b)


def test_images_on_disk_are_evaluated_with_the_test_transform(tmp_path):
    from sdrc.data import ImageList
    domain = _images_on_disk(tmp_path, _random_images(6, 3, 0, "src"), "src")
    flipped = ImageList(domain.root, domain.classes, tmp_path / "src.txt", transform=lambda img: domain.transform(img).flip(-1),
                        eval_transform=domain.transform)
    assert not torch.equal(flipped[0][0], domain[0][0])
    assert torch.equal(evaluation_view(flipped)[0][0], domain[0][0])
    assert evaluation_view(flipped).samples is flipped.samples and flipped.transform is not domain.transform


def test_bad_threads_or_workers_or_device():
    with pytest.raises(ValueError, match="`threads` must be a positive integer"):
        Runtime(threads=0)
    with pytest.raises(ValueError, match="`workers` must be an integer ≥ 0"):
        Runtime(workers=-1)
    with pytest.raises(ValueError, match="unknown device 'foo'"):
        Trainer(make_domain_pair(n_per_class=4, seed=0), small(), Runtime(device="foo"))


def test_dataset_q_not_detached_warns_that_it_changes_nothing(toy):
    with pytest.warns(UserWarning, match="detach_q=False has no effect with q_scope='dataset'"):
        Trainer(toy, small(preset="paper", overrides=dict(detach_q=False)), QUIET)


def test_images_on_disk_with_random_crops_train_alike_with_any_number_of_loader_processes(tmp_path):
    "Each image's random transform is seeded from its index and pass, so `workers` (a runtime setting) changes nothing."
    from sdrc.data import ImageList
    from sdrc.models import digit_net
    source, target = _random_images(48, 3, 0, "src"), _random_images(40, 3, 1, "tgt")
    fixed_s, fixed_t = _images_on_disk(tmp_path, source, "src"), _images_on_disk(tmp_path, target, "tgt")
    crop = lambda img: fixed_s.transform(img)[:, torch.randint(0, 5, ()):][:, :24, :24]  # noqa: E731  (random in torch)

    def random_crops(domain):
        return ImageList(domain.root, domain.classes, tmp_path / f"{domain.name}.txt", transform=crop,
                         eval_transform=lambda img: domain.transform(img)[:, 2:26, 2:26], name=domain.name)
    pair = DomainPair(random_crops(fixed_s), random_crops(fixed_s), random_crops(fixed_t), random_crops(fixed_t), source.classes)
    cfg = small(preset="official", epochs=1, batch_size=16, bn_samples=32, record_samples=0)
    histories = []
    for workers in (0, 2):
        torch.manual_seed(5)  # the same starting network
        runtime = Runtime(progress=False, log=None, threads=1, workers=workers)
        histories.append(Trainer(pair, cfg, runtime, model=digit_net(3, in_channels=3)).fit())
    strip = lambda h: [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in h]  # noqa: E731
    assert strip(histories[0]) == strip(histories[1])


# ---------------------------------------------------------------- a loss that diverges

def _nan_at_step(monkeypatch, n: int):
    "Make the method's loss NaN from the n-th training step on."
    import sdrc.methods as M
    real, seen = M.METHODS["srdc"], {"n": 0}

    def loss(batch, ctx):
        value, terms = real.loss(batch, ctx)
        seen["n"] += 1
        return (value * float("nan"), terms) if seen["n"] >= n else (value, terms)
    monkeypatch.setitem(M.METHODS, "srdc", M.Method(loss, real.extra, real.description))


@pytest.mark.parametrize("each_step", [True, False], ids=["cpu: every step", "gpu: once per epoch"])
def test_a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint(toy, tmp_path, monkeypatch, each_step):
    import sdrc.train as T
    from sdrc.train import TrainingDiverged
    monkeypatch.setattr(T, "checks_each_step", lambda device: each_step)
    _nan_at_step(monkeypatch, 10)  # epoch 2 has steps 9-12
    trainer = Trainer(toy, small(epochs=3), QUIET, out=tmp_path / "run")
    where = "step 2 of 4" if each_step else "checked at the end of the epoch"
    with pytest.raises(TrainingDiverged, match=f"training diverged in epoch 2 \\({where}\\).*learning rate"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["next_epoch"] == 2  # the checkpoint after epoch 1 is intact
    if each_step:  # the bad step was never taken
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert (tmp_path / "run" / ".lock").read_text() == ""  # the folder is released
