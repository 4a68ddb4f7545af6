"""The downloader, on its real code path, against a server this test starts on 127.0.0.1 that serves small files the
test makes: MNIST and USPS through torchvision's own downloaders (their mirror and file lists pointed at the server),
MNIST-M through the pinned manifest; a wrong checksum, a truncated transfer, a server that is down, a repeated or
resumed download, and the offline switch."""
import bz2
import gzip
import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdrc.fetch as fetch
from sdrc.data import load_digits_bundle
from sdrc.fetch import DownloadError, ManifestEntry, data_status, download, fetch_digits, fetch_mnistm

N = 12  # MNIST test images; the MNIST-M images are blended from the first three of them


class Server:
    "A threaded HTTP server on 127.0.0.1 serving `folder`, counting requests; `lie` names files sent truncated."
    def __init__(self, folder: Path):
        self.requests, self.lie = [], set()
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if name in outer.lie:
                    body = (folder / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + 100))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def idx(array: np.ndarray, magic: int) -> bytes:
    return gzip.compress(magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes())


def make_sources(folder: Path) -> tuple[dict, list[ManifestEntry], str]:
    "Tiny MNIST (idx.gz), USPS (libsvm .bz2) and MNIST-M (PNGs and labels file); returns md5s, manifest, labels sha."
    rng = np.random.default_rng(0)
    y = (np.arange(N) % 10).astype(np.uint8)
    files = {"train-images-idx3-ubyte.gz": idx(rng.integers(0, 255, (N, 28, 28), dtype=np.uint8), 2051),
             "train-labels-idx1-ubyte.gz": idx(y, 2049),
             "t10k-images-idx3-ubyte.gz": idx(rng.integers(0, 255, (N, 28, 28), dtype=np.uint8), 2051),
             "t10k-labels-idx1-ubyte.gz": idx(y, 2049)}
    lines = [f"{k % 10 + 1} " + " ".join(f"{i + 1}:{v:.3f}" for i, v in enumerate(rng.uniform(-1, 1, 256))) for k in range(6)]
    files["usps.bz2"] = bz2.compress("\n".join(lines).encode())
    files["usps.t.bz2"] = bz2.compress("\n".join(lines[:3]).encode())
    (folder / "mnist").mkdir(parents=True)
    for name, data in files.items():
        (folder / ("mnist" if "idx" in name else "") / name).write_bytes(data)
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    (folder / "mnist_m" / "mnist_m_test").mkdir(parents=True)
    manifest = []
    for i in range(3):
        png = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(png, format="PNG")
        name = f"{i:08d}.png"
        (folder / "mnist_m" / "mnist_m_test" / name).write_bytes(png.getvalue())
        manifest.append(ManifestEntry(i, name, int(y[i]), hashlib.sha256(png.getvalue()).hexdigest(), len(png.getvalue())))
    labels = "".join(f"{e.file} {e.label}\n" for e in manifest).encode()
    (folder / "mnist_m" / "mnist_m_test_labels.txt").write_bytes(labels)
    return md5, manifest, hashlib.sha256(labels).hexdigest()


@pytest.fixture
def served(tmp_path, monkeypatch):
    "The server, its sources, and torchvision and sdrc pointed at it; downloads allowed for this test only."
    from torchvision.datasets import MNIST, USPS
    md5, manifest, labels_sha = make_sources(tmp_path / "www")
    server = Server(tmp_path / "www")
    monkeypatch.setenv("SDRC_OFFLINE", "0")
    monkeypatch.setattr(MNIST, "mirrors", [f"{server.url}/mnist/"])
    monkeypatch.setattr(MNIST, "resources", [(name, md5[name]) for name, _ in MNIST.resources])
    monkeypatch.setattr(USPS, "split_list", {split: [f"{server.url}/{name}", name, md5[name]]
                                             for split, name in (("train", "usps.bz2"), ("test", "usps.t.bz2"))})
    monkeypatch.setattr(fetch, "MNISTM_LABELS", ("mnist_m_test_labels.txt", labels_sha))
    yield server, manifest
    server.stop()


def test_the_bundle_is_built_from_downloads_and_a_second_run_fetches_nothing(served, tmp_path):
    server, manifest = served
    path = fetch_digits(tmp_path / "data", progress=False, log=lambda line: None, source=f"{server.url}/mnist_m",
                        manifest=manifest)
    arrays = load_digits_bundle(path)
    assert len(arrays["mnist_y"]) == N and len(arrays["usps_y"]) == 9 and arrays["mnistm_x"].shape == (3, 32, 32, 3)
    assert arrays["mnistm_y"].tolist() == [0, 1, 2] and arrays["usps_y"].tolist()[:3] == [0, 1, 2]
    assert data_status(tmp_path / "data")["bundle"].startswith("present")
    before = len(server.requests)
    fetch_mnistm(tmp_path / "data" / "raw" / "mnist_m", f"{server.url}/mnist_m", manifest, progress=False)
    assert len(server.requests) == before  # every file is there with its checksum: nothing is fetched again


def test_a_download_that_stopped_resumes_with_what_is_missing(served, tmp_path):
    server, manifest = served
    folder = tmp_path / "mnist_m"
    download(f"{server.url}/mnist_m/mnist_m_test/{manifest[0].file}", folder / "mnist_m_test" / manifest[0].file,
             manifest[0].sha256)
    server.requests.clear()
    fetch_mnistm(folder, f"{server.url}/mnist_m", manifest, progress=False)
    assert sorted(r.rsplit("/", 1)[-1] for r in server.requests) == ["00000001.png", "00000002.png", "mnist_m_test_labels.txt"]


def test_a_wrong_checksum_or_a_truncated_file_keeps_nothing(served, tmp_path):
    server, manifest = served
    bad = [ManifestEntry(0, manifest[0].file, 0, "0" * 64, 1)]
    with pytest.raises(DownloadError, match="does not have the expected checksum"):
        fetch_mnistm(tmp_path / "m", f"{server.url}/mnist_m", bad, progress=False)
    assert not list((tmp_path / "m" / "mnist_m_test").glob("*"))
    server.lie.add(manifest[1].file)
    with pytest.raises(DownloadError, match="truncated|could not fetch"):
        download(f"{server.url}/mnist_m/mnist_m_test/{manifest[1].file}", tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_a_server_that_is_down_gives_one_line_saying_what_to_fetch_by_hand(served, tmp_path):
    server, manifest = served
    server.stop()
    with pytest.raises(DownloadError) as err:
        fetch_digits(tmp_path / "data", progress=False, log=lambda line: None, source=f"{server.url}/mnist_m",
                     manifest=manifest)
    assert "\n" not in str(err.value) and "by hand" in str(err.value)


def test_offline_nothing_is_fetched(served, tmp_path, monkeypatch):
    server, manifest = served
    monkeypatch.setenv("SDRC_OFFLINE", "1")
    with pytest.raises(DownloadError, match="SDRC_OFFLINE is set"):
        fetch_digits(tmp_path / "data", progress=False, source=f"{server.url}/mnist_m", manifest=manifest)
    assert not server.requests
