"""Tests of sdrc.data: the real digit bundle, building it from tiny fake downloads, image lists, toy domains, batches."""
import bz2
import re
import struct

import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st
from PIL import Image

from sdrc import data as D
from sdrc.data import (BENCHMARKS, DomainPair, ImageList, TensorDomain, atomic_write, benchmark_domain, benchmark_pair,
                       build_digits_bundle, digit_domain, digit_pair, find_digits_bundle, infinite_batches,
                       iterations_per_epoch, load_digits_bundle, make_domain_pair, mnistm_default_index,
                       prepare_images)

# ---------------------------------------------------------------- the real bundle


def test_real_bundle_loads_with_the_documented_counts(digits_root):
    arrays = load_digits_bundle(find_digits_bundle(digits_root))
    assert arrays["mnist_x"].shape == (5000, 28, 28) and arrays["usps_x"].shape == (9298, 16, 16)
    assert arrays["mnistm_x"].shape == (2000, 32, 32, 3)
    assert np.bincount(arrays["usps_y"]).tolist() == [1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821]
    assert np.bincount(arrays["mnistm_y"]).tolist() == [198, 219, 210, 217, 184, 165, 202, 206, 189, 210]
    assert (arrays["mnistm_src_index"] == mnistm_default_index()).all()


def test_digit_pair_splits_and_shapes(digits_root):
    pair = digit_pair("mnist", "usps", root=digits_root)
    assert [len(s) for s in pair.splits().values()] == [4000, 1000, 7291, 2007]
    assert pair.source_train.x.shape[1:] == (1, 32, 32) and pair.source_train.x.dtype == torch.uint8  # grey: one channel
    assert digit_pair("mnist", "mnistm", root=digits_root).target_train.x.shape[1:] == (3, 32, 32)  # colour: three
    assert pair.target_train.class_counts() == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
    x, y, i = pair.target_test.batch(torch.tensor([0, 5]))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and i.tolist() == [0, 5]
    assert "| target_test | usps/test | 2007 |" in pair.summary()


def test_digit_pair_grey_and_size(digits_root):
    pair = digit_pair("mnistm", "mnist", root=digits_root, size=28, channels=1)
    assert pair.source_train.x.shape == (1600, 1, 28, 28) and len(pair.source_test) == 400
    assert pair.target_train.x.shape == (4000, 1, 28, 28)


def test_digits_found_through_the_environment(digits_root, monkeypatch):
    monkeypatch.setenv("SDRC_DATA", str(digits_root))
    assert find_digits_bundle() == digits_root / "digits_real.npz"
    monkeypatch.setenv("SDRC_DATA", str(digits_root / "digits_real.npz"))
    assert find_digits_bundle().name == "digits_real.npz"


def test_missing_bundle_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SDRC_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(D, "DEFAULT_DATA_DIR", tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="looked in: .*nowhere/digits_real.npz, .*cache/digits_real.npz"):
        find_digits_bundle()
    with pytest.raises(FileNotFoundError, match="elsewhere/digits_real.npz"):
        digit_pair(root=tmp_path / "elsewhere")


def test_unknown_or_repeated_digit_domain(digits_root):
    with pytest.raises(ValueError, match="unknown digit domain 'svhn'"):
        digit_pair("mnist", "svhn", root=digits_root)
    with pytest.raises(ValueError, match="same domain"):
        digit_pair("usps", "usps", root=digits_root)


# ---------------------------------------------------------------- bad bundles

def _tiny_bundle(**changes):
    arrays = dict(mnist_x=np.zeros((4, 28, 28), np.uint8), mnist_y=np.array([0, 1, 2, 3], np.uint8),
                  usps_x=np.zeros((3, 16, 16), np.uint8), usps_y=np.array([0, 1, 9], np.uint8),
                  mnistm_x=np.zeros((2, 32, 32, 3), np.uint8), mnistm_y=np.array([4, 5], np.uint8))
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def test_truncated_bundle_is_refused_by_name(tmp_path):
    path = tmp_path / "digits_real.npz"
    np.savez_compressed(path, **_tiny_bundle())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"{path} is not a readable digit bundle"):
        load_digits_bundle(path)


def test_bundle_missing_an_array(tmp_path):
    np.savez_compressed(tmp_path / "b.npz", **_tiny_bundle(usps_y=None))
    with pytest.raises(ValueError, match="has no array 'usps_y'"):
        load_digits_bundle(tmp_path / "b.npz")


def test_bundle_with_wrong_dtype_or_lengths(tmp_path):
    np.savez_compressed(tmp_path / "b.npz", **_tiny_bundle(mnist_x=np.zeros((4, 28, 28), np.float32)))
    with pytest.raises(ValueError, match="'mnist_x' should be a 3-D uint8 array"):
        load_digits_bundle(tmp_path / "b.npz")
    np.savez_compressed(tmp_path / "c.npz", **_tiny_bundle(usps_y=np.array([0, 1], np.uint8)))
    with pytest.raises(ValueError, match="usps has 3 images and 2 labels"):
        load_digits_bundle(tmp_path / "c.npz")


def test_pickled_bundle_is_refused(tmp_path):
    "An object array needs unpickling, which could run code: it must be refused."
    np.savez(tmp_path / "evil.npz", **_tiny_bundle(mnist_y=np.array([object()] * 4, dtype=object)))
    with pytest.raises(ValueError, match="not a readable digit bundle"):
        load_digits_bundle(tmp_path / "evil.npz")


# ---------------------------------------------------------------- image preparation

def test_prepare_images_golden():
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert prepare_images(red, size=8, channels=1)[0, 0, 0, 0].item() == round(0.299 * 255)
    grey = np.full((2, 4, 4), 7, np.uint8)
    out = prepare_images(grey, size=8, channels=3)
    assert out.shape == (2, 3, 8, 8) and bool((out == 7).all())
    with pytest.raises(ValueError, match="`channels` must be 1 or 3"):
        prepare_images(grey, channels=2)


# ---------------------------------------------------------------- building the bundle from fake downloads

def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape) + array.tobytes())


def _fake_downloads(tmp_path, labels=(3, 1, 4, 1, 5, 9, 2, 6)):
    "MNIST idx files, USPS libsvm bz2 files and an MNIST-M folder, a few images each, in the published layouts."
    raw = tmp_path / "dl" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.array(labels, np.uint8)
    images = (np.arange(len(labels))[:, None, None] * 10 + np.zeros((1, 28, 28))).astype(np.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 0x801)
    for name, n in (("usps.bz2", 3), ("usps.t.bz2", 2)):
        lines = [f"{k + 1} " + " ".join(f"{j + 1}:{-1 + 2 * k / 9:.6f}" for j in range(256)) for k in range(n)]
        (tmp_path / "dl" / name).write_bytes(bz2.compress("\n".join(lines).encode()))
    mnistm = tmp_path / "mnist_m"
    (mnistm / "mnist_m_test").mkdir(parents=True)
    for k, label in enumerate(labels):
        Image.new("RGB", (32, 32), (k * 20, 100, 50)).save(mnistm / "mnist_m_test" / f"{k:08d}.png")
    (mnistm / "mnist_m_test_labels.txt").write_text("".join(f"{k:08d}.png {v}\n" for k, v in enumerate(labels)))
    return tmp_path / "dl", mnistm


def test_build_bundle_from_fake_downloads(tmp_path):
    root, mnistm = _fake_downloads(tmp_path)
    path = build_digits_bundle(tmp_path / "out", root, download=False, mnistm_dir=mnistm, mnistm_index=[1, 4, 6])
    arrays = load_digits_bundle(path)
    assert arrays["mnist_y"].tolist() == [3, 1, 4, 1, 5, 9, 2, 6]
    assert arrays["usps_y"].tolist() == [0, 1, 2, 0, 1] and arrays["usps_x"].shape == (5, 16, 16)
    assert arrays["usps_x"][1, 0, 0] == int((-1 + 2 / 9 + 1) / 2 * 255)
    assert arrays["mnistm_y"].tolist() == [1, 5, 2] and arrays["mnistm_x"][1, 0, 0].tolist() == [80, 100, 50]
    assert arrays["mnistm_src_index"].tolist() == [1, 4, 6]
    train, test = digit_domain("mnist", root=path.parent)
    assert len(train) == 7 and len(test) == 1  # fewer than 4,000 images: all but one for training
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["digits_real.npz"]  # no temporary left


def test_build_bundle_checks_mnistm_labels(tmp_path):
    root, mnistm = _fake_downloads(tmp_path)
    (mnistm / "mnist_m_test_labels.txt").write_text("".join(f"{k:08d}.png 0\n" for k in range(8)))
    with pytest.raises(ValueError, match="MNIST-M labels disagree"):
        build_digits_bundle(tmp_path / "out", root, download=False, mnistm_dir=mnistm, mnistm_index=[1, 4])
    assert not (tmp_path / "out" / "digits_real.npz").exists()


def test_build_bundle_without_sources(tmp_path):
    with pytest.raises(ValueError, match="pass mnistm_dir"):
        build_digits_bundle(tmp_path, tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="not found under"):
        build_digits_bundle(tmp_path, tmp_path / "empty", download=False, mnistm_dir=tmp_path)
    root, _ = _fake_downloads(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not an MNIST-M folder"):
        build_digits_bundle(tmp_path / "o", root, download=False, mnistm_dir=tmp_path / "nothing")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# ---------------------------------------------------------------- image lists

@pytest.fixture
def office_tree(tmp_path):
    "A tiny Office-31-shaped tree: amazon/images/<class>/<k>.jpg."
    for cls in ("bike", "mug", "ruler"):
        (tmp_path / "amazon/images" / cls).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (30, 20), (k * 100, 0, 0)).save(tmp_path / "amazon/images" / cls / f"{k}.jpg")
    return tmp_path


def test_class_folders(office_tree):
    ds = benchmark_domain("office31", "A", office_tree)
    classes = BENCHMARKS["office31"].classes
    assert len(ds) == 6 and ds.class_counts()[classes.index("ruler")] == 2
    x, y, i = ds[0]
    assert x.shape == (3, 224, 224) and y == classes.index("bike") and i == 0


def test_list_file(office_tree):
    (office_tree / "list.txt").write_text("amazon/images/mug/1.jpg 17\n\namazon/images/bike/0.jpg 1\n")
    ds = benchmark_domain("office31", "A", office_tree, list_file=office_tree / "list.txt", train=False)
    assert ds.y.tolist() == [17, 1] and ds[0][0].shape == (3, 224, 224)


@pytest.mark.parametrize("content, error, message", [
    ("amazon/images/mug/1.jpg 31\n", ValueError, "line 1: label 31 is outside the 31 classes"),
    ("amazon/images/mug/1.jpg -1\n", ValueError, "label -1 is outside"),
    ("amazon/images/mug/7.jpg 3\n", FileNotFoundError, "line 1: image .*mug/7.jpg does not exist"),
    ("amazon/images/mug/1.jpg\n", ValueError, "expected 'relative/path label'"),
    ("amazon/images/mug/1.jpg cat\n", ValueError, "expected 'relative/path label'"),
])
def test_bad_list_files(office_tree, content, error, message):
    (office_tree / "list.txt").write_text(content)
    with pytest.raises(error, match=message):
        ImageList(office_tree, BENCHMARKS["office31"].classes, office_tree / "list.txt")


def test_missing_root_and_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset root .*nothing not found"):
        ImageList(tmp_path / "nothing", ("a", "b"))
    with pytest.raises(FileNotFoundError, match="image list .*absent.txt not found"):
        ImageList(tmp_path, ("a", "b"), tmp_path / "absent.txt")


def test_unknown_class_folder(office_tree):
    (office_tree / "amazon/images/unicorn").mkdir()
    with pytest.raises(ValueError, match=r"folders \['unicorn'\] are not among the 31 known classes"):
        benchmark_domain("office31", "A", office_tree)


def test_unreadable_image_is_named(office_tree):
    bad = office_tree / "amazon/images/mug/broken.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = benchmark_domain("office31", "A", office_tree)
    index = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        ds[index]


def test_unknown_benchmark_or_domain(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'office32'"):
        benchmark_domain("office32", "A", tmp_path)
    with pytest.raises(ValueError, match="officehome has no domain 'A'; its domains are Ar, Cl, Pr, Rw"):
        benchmark_domain("officehome", "A", tmp_path)


# ---------------------------------------------------------------- toy domains

@pytest.mark.parametrize("shift, amount", [("translate", 2.0), ("scale", 2.0), ("rotate", 180.0)])
def test_toy_shift_moves_class_means(shift, amount):
    pair = make_domain_pair(400, 4, dim=3, shift=shift, amount=amount, spread=0.1, seed=1)
    src = torch.stack([pair.source_train.x[pair.source_train.y == k].mean(0) for k in range(4)])
    tgt = torch.stack([pair.target_train.x[pair.target_train.y == k].mean(0) for k in range(4)])
    expected = {"translate": src + torch.tensor([2.0, 0, 0]), "scale": 2 * src,
                "rotate": src * torch.tensor([-1.0, -1.0, 1.0])}[shift]
    torch.testing.assert_close(tgt, expected, atol=0.05, rtol=0)


def test_toy_is_seeded_and_imbalanced():
    a, b = make_domain_pair(20, 5, seed=3, imbalance=0.1), make_domain_pair(20, 5, seed=3, imbalance=0.1)
    assert torch.equal(a.target_train.x, b.target_train.x)
    assert not torch.equal(a.target_train.x, make_domain_pair(20, 5, seed=4, imbalance=0.1).target_train.x)
    assert a.target_train.class_counts() == [20, 11, 6, 4, 2] and a.source_train.class_counts() == [20] * 5
    assert not torch.equal(a.target_train.x, a.target_test.x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shift="shear"), "unknown shift 'shear'"),
    (dict(imbalance=0.0), "`imbalance` must lie in"),
    (dict(num_classes=1), "num_classes ≥ 2"),
])
def test_toy_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_domain_pair(**kwargs)


# ---------------------------------------------------------------- batches

def test_iterations_per_epoch_golden():
    assert iterations_per_epoch(4000, 7291, 64) == 114
    assert iterations_per_epoch(64, 1, 64) == 1 and iterations_per_epoch(65, 1, 64) == 2
    with pytest.raises(ValueError):
        iterations_per_epoch(1, 1, 0)


def test_infinite_batches_cover_each_pass_and_repeat():
    ds = TensorDomain(torch.arange(10.0)[:, None], torch.zeros(10), "ten", ("a",))
    stream = infinite_batches(ds, 4, generator=torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(6)]  # two passes of 4 + 4 + 2
    assert [len(b[2]) for b in batches] == [4, 4, 2, 4, 4, 2]
    for first in (0, 3):
        seen = torch.cat([b[2] for b in batches[first:first + 3]])
        assert sorted(seen.tolist()) == list(range(10))
        torch.testing.assert_close(torch.cat([b[0] for b in batches[first:first + 3]])[:, 0], seen.float())
    again = infinite_batches(ds, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(next(again)[2], batches[0][2])


def test_infinite_batches_through_a_dataloader(office_tree):
    ds = benchmark_domain("office31", "A", office_tree, train=False)
    stream = infinite_batches(ds, 4, generator=torch.Generator().manual_seed(0))
    sizes = [len(next(stream)[2]) for _ in range(3)]
    assert sizes == [4, 2, 4]


def test_domain_pair_summary_and_classes():
    pair = make_domain_pair(5, 2)
    assert isinstance(pair, DomainPair) and pair.num_classes == 2
    assert "| source_train | source/train | 10 | 5 | 5 |" in pair.summary()


@given(n=st.integers(1, 200), batch=st.integers(1, 32), world=st.integers(1, 4))
def test_processes_split_each_pass_without_overlap(n, batch, world):
    "With a shared seed, the processes' first batches are disjoint and together are the first batches of one process."
    assume(-(-n // batch) >= world)
    domain = TensorDomain(torch.arange(n).float().view(n, 1), torch.zeros(n), "d", ("a",))
    draw = lambda **share: infinite_batches(domain, batch, generator=torch.Generator().manual_seed(1), **share)  # noqa: E731
    one = draw()
    expected = torch.cat([next(one)[2] for _ in range(world)])
    assert torch.equal(torch.cat([next(draw(rank=r, world=world))[2] for r in range(world)]), expected)


def test_more_processes_than_batches_is_refused():
    domain = TensorDomain(torch.zeros(10, 1), torch.zeros(10), "d", ("a",))
    with pytest.raises(ValueError, match="fewer batches of 8 than there are processes"):
        next(infinite_batches(domain, 8, world=3))


def test_pairs_with_mnistm_standardise_each_image(digits_root):
    "MNIST-M pairs see each image channel at mean 0 and std 1; grey pairs keep the plain [-1, 1] scaling."
    colour = digit_pair("mnist", "mnistm", root=digits_root)
    x, _, _ = colour.target_train.batch(torch.arange(50))
    assert colour.source_train.standardise and colour.target_test.standardise
    torch.testing.assert_close(x.mean((2, 3)), torch.zeros(50, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((2, 3)), torch.ones(50, 3), atol=1e-4, rtol=0)
    grey = digit_pair("mnist", "usps", root=digits_root, channels=1)
    x, _, _ = grey.source_train.batch(torch.arange(50))
    assert not grey.source_train.standardise and x.min() == -1 and x.max() == 1
    assert not digit_pair("mnist", "mnistm", root=digits_root, standardise=False).target_train.standardise


@given(value=st.integers(0, 255))
def test_a_flat_image_standardises_to_zero(value):
    "A constant channel has no spread: it becomes (up to rounding) 0, not NaN or a blown-up value."
    d = TensorDomain(torch.full((1, 3, 4, 4), value, dtype=torch.uint8), torch.tensor([0]), "flat", ("a",), standardise=True)
    torch.testing.assert_close(d[0][0], torch.zeros(3, 4, 4), atol=1e-3, rtol=0)


@pytest.mark.parametrize("call, fragment", [
    (lambda: TensorDomain(torch.zeros(4, 1, 1, 8, 8), torch.zeros(4, dtype=torch.long), "x", ["a", "b"]),
     "inputs should be N×D features or N×C×H×W images"),
    (lambda: TensorDomain(torch.zeros(4, 3), torch.tensor([0.5, 1, 0, 1]), "x", ["a", "b"]),
     "labels should be a 1-D tensor of class indices"),
    (lambda: prepare_images(np.zeros((4, 1, 1, 8, 8), np.uint8)), "images should be N×H×W or N×H×W×C"),
    (lambda: benchmark_pair("office31", "A", "W", None), "`root` must be the folder that holds the office31 images"),
], ids=["5-D inputs", "float labels", "5-D images", "no root"])
def test_library_calls_with_inputs_no_domain_can_hold(call, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call()
