"""Datasets fetched into the Keras cache, against a tiny HTTP server on 127.0.0.1: good and bad
downloads, damaged cache files, unsafe tarballs, --offline and the order of the places tried."""
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
from conftest import write_mnist

import fetching
import mlpreprocess
from fetching import RemoteFile
from mlpreprocess import DatasetError, load_dataset
from runs import load_recorded_dataset

STALL_S = 20.0  # how long a stalling server waits; the client gives up after TIMEOUT_S
TIMEOUT_S = 0.5


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes: path -> (behaviour, body)."""

    def do_GET(self):
        self.server.hits.append(self.path)
        behaviour, body = self.server.routes.get(self.path, ("missing", b""))
        if behaviour == "missing":
            self.send_error(404, "Not Found")
            return
        if behaviour == "stall_before_answer":
            time.sleep(STALL_S)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "stall_in_body":
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(STALL_S)
        elif behaviour == "truncated":
            self.wfile.write(body[:len(body) // 2])  # then the connection closes
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.hits = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Keras cache for one test, and a short download timeout."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(fetching, "DOWNLOAD_TIMEOUT_S", TIMEOUT_S)
    return home / "datasets"


def mnist_npz(n=40, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, n).astype(np.uint8),
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test).astype(np.uint8))
    return buffer.getvalue()


def publish(monkeypatch, server, dataset, files, behaviour="ok", served=None):
    """Point `dataset`'s release at the server: {cache name: bytes}; the published checksum is that
    of `files`, the bytes served are `served` (default the same)."""
    remotes = []
    for name, body in files.items():
        route = "/" + os.path.basename(name)
        server.routes[route] = (behaviour, (served or files)[name])
        remotes.append(RemoteFile(name, server.url + route, "sha256", hashlib.sha256(body).hexdigest(), "the test"))
    monkeypatch.setitem(fetching.REMOTE_FILES, dataset, tuple(remotes))


def no_partial_files(folder):
    return not folder.exists() or not [p for p in folder.rglob("*") if p.name.endswith(".part")]


# ----------------------------------------------------------------------------- MNIST
def test_a_good_download_is_cached_verified_and_used_again_without_the_network(server, cache, monkeypatch,
                                                                                 tmp_path):
    body = mnist_npz()
    publish(monkeypatch, server, "mnist", {"mnist.npz": body})
    dataset = load_dataset("mnist", str(tmp_path / "empty"), log=lambda line: None)
    assert dataset.images.shape == (40, 28, 28, 1) and dataset.test_images.shape == (12, 28, 28, 1)
    assert (cache / "mnist.npz").read_bytes() == body and no_partial_files(cache)
    assert dataset.origin == {"reader": "npz", "path": str(cache / "mnist.npz"),
                              "sha256": {"mnist.npz": hashlib.sha256(body).hexdigest()}}
    assert "checked against the checksum" in dataset.source
    again = load_dataset("mnist", str(tmp_path / "empty"))
    assert server.hits == ["/mnist.npz"]  # the second time from the cache
    np.testing.assert_array_equal(again.images, dataset.images)


@pytest.mark.parametrize("behaviour, served, reason", [
    ("ok", b"not the release", "SHA-256 of the download is"),
    ("missing", None, "HTTP 404 Not Found"),
    ("truncated", None, "ended after"),
    ("stall_before_answer", None, f"no data for {TIMEOUT_S:g} s"),
    ("stall_in_body", None, f"no data for {TIMEOUT_S:g} s"),
])
def test_a_failed_download_leaves_nothing_and_falls_back_with_the_reason(server, cache, monkeypatch, tmp_path,
                                                                         behaviour, served, reason):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()}, behaviour,
            served and {"mnist.npz": served})
    attempts, download = [], fetching.download

    def timed_download(*args, **kwargs):
        started = time.perf_counter()
        try:
            return download(*args, **kwargs)
        finally:
            attempts.append(time.perf_counter() - started)
    monkeypatch.setattr(fetching, "download", timed_download)
    dataset = load_dataset("mnist", str(tmp_path), log=lambda line: None)
    assert len(attempts) == 1 and attempts[0] < STALL_S / 2  # gave up, did not wait for the server
    assert dataset.images.shape == (5000, 28, 28, 1) and dataset.origin == {"reader": "embedded", "images": 5000}
    assert reason in dataset.source and "embedded" in dataset.source and "\n" not in dataset.source
    assert not (cache / "mnist.npz").exists() and no_partial_files(cache)


def test_no_route_falls_back_at_once(cache, monkeypatch, tmp_path):
    # A port nobody listens on: the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(fetching.REMOTE_FILES, "mnist",
                        (RemoteFile("mnist.npz", f"http://127.0.0.1:{port}/mnist.npz", "sha256", "0" * 64, "t"),))
    dataset = load_dataset("mnist", str(tmp_path), log=lambda line: None)
    assert "127.0.0.1: cannot connect" in dataset.source and dataset.images.shape[0] == 5000


def test_a_full_disk_is_named(server, cache, monkeypatch, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    make_temp = fetching.tempfile.mkstemp

    def full_disk(**kwargs):  # the real temporary file, but every write to it fails with ENOSPC
        descriptor, path = make_temp(**kwargs)
        os.close(descriptor)
        return os.open("/dev/full", os.O_WRONLY), path
    monkeypatch.setattr(fetching.tempfile, "mkstemp", full_disk)
    dataset = load_dataset("mnist", str(tmp_path), log=lambda line: None)
    assert "no space left on the device" in dataset.source and no_partial_files(cache)


def test_a_cached_file_damaged_later_is_refused_by_name_and_kept(server, cache, monkeypatch, tmp_path):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    load_dataset("mnist", str(tmp_path), log=lambda line: None)
    damaged = bytearray((cache / "mnist.npz").read_bytes())
    damaged[-10] ^= 0xFF
    (cache / "mnist.npz").write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match=f"{cache / 'mnist.npz'}: SHA-256 .* is not the .* delete it"):
        load_dataset("mnist", str(tmp_path))
    assert (cache / "mnist.npz").read_bytes() == bytes(damaged) and server.hits == ["/mnist.npz"]


def test_offline_never_connects(server, cache, monkeypatch, tmp_path):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    connections = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a))
    dataset = load_dataset("mnist", str(tmp_path), offline=True)
    assert connections == [] and server.hits == []
    assert f"--offline, and {cache / 'mnist.npz'} is not there" in dataset.source
    assert dataset.images.shape[0] == 5000


def test_offline_still_uses_the_cache(server, cache, monkeypatch, tmp_path):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    load_dataset("mnist", str(tmp_path), log=lambda line: None)
    assert load_dataset("mnist", str(tmp_path), offline=True).images.shape[0] == 40


def test_idx_files_in_the_data_dir_come_before_the_cache(server, cache, monkeypatch, tmp_path):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    write_mnist(str(tmp_path / "idx"), n=9)
    dataset = load_dataset("mnist", str(tmp_path / "idx"))
    assert dataset.images.shape[0] == 9 and server.hits == [] and dataset.origin["reader"] == "idx"
    assert set(dataset.origin["sha256"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}


def test_a_cached_file_comes_before_a_download(server, cache, monkeypatch, tmp_path):
    body = mnist_npz(n=17)
    publish(monkeypatch, server, "mnist", {"mnist.npz": body})
    cache.mkdir(parents=True)
    (cache / "mnist.npz").write_bytes(body)
    assert load_dataset("mnist", str(tmp_path)).images.shape[0] == 17 and server.hits == []


# ----------------------------------------------------------------------------- Fashion-MNIST
def _fashion_files(tmp_path):
    write_mnist(str(tmp_path / "release"), n=11, seed=3)
    write_mnist(str(tmp_path / "release"), n=5, kind="t10k", seed=4)
    return {f"fashion-mnist/{name}": (tmp_path / "release" / name).read_bytes()
            for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def test_fashion_mnist_prefers_the_data_dir_then_debians_folder_then_the_cache(server, cache, monkeypatch,
                                                                                 tmp_path):
    publish(monkeypatch, server, "fashion_mnist", _fashion_files(tmp_path))
    system = tmp_path / "debian"
    monkeypatch.setattr(mlpreprocess, "FASHION_MNIST_SYSTEM_DIR", str(system))
    write_mnist(str(system), n=7)
    write_mnist(str(tmp_path / "mine"), n=6)
    assert load_dataset("fashion_mnist", str(tmp_path / "mine")).images.shape[0] == 6
    assert load_dataset("fashion_mnist", str(tmp_path / "none")).images.shape[0] == 7
    assert server.hits == []
    for path in system.iterdir():
        path.unlink()
    dataset = load_dataset("fashion_mnist", str(tmp_path / "none"), log=lambda line: None)
    assert dataset.images.shape[0] == 11 and dataset.test_images.shape[0] == 5 and len(server.hits) == 4
    assert dataset.origin["path"] == str(cache / "fashion-mnist")


def test_fashion_mnist_that_cannot_be_had_is_an_error_with_the_reason(server, cache, monkeypatch, tmp_path):
    files = _fashion_files(tmp_path)
    publish(monkeypatch, server, "fashion_mnist", files, "missing")
    monkeypatch.setattr(mlpreprocess, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(DatasetError, match="HTTP 404 .*dataset-fashion-mnist"):
        load_dataset("fashion_mnist", str(tmp_path / "none"), log=lambda line: None)
    with pytest.raises(DatasetError, match="--offline"):
        load_dataset("fashion_mnist", str(tmp_path / "none"), offline=True)


# ----------------------------------------------------------------------------- CIFAR-10 tarballs
def _tarball(members):
    """A .tar.gz from (name, bytes or ('symlink', target)) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, protocol=2)


def test_the_cifar_tarball_is_downloaded_extracted_and_read(server, cache, monkeypatch, tmp_path):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    body = _tarball([(f"cifar-10-batches-py/{name}", _cifar_batch(3, seed)) for seed, name in enumerate(names)])
    publish(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": body})
    dataset = load_dataset("cifar10", str(tmp_path / "none"), log=lambda line: None)
    assert dataset.images.shape == (15, 32, 32, 3) and dataset.test_images.shape == (3, 32, 32, 3)
    assert dataset.origin["path"] == str(cache / "cifar-10-batches-py")
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


@pytest.mark.parametrize("member", [
    ("../escaped", b"outside"),
    ("cifar-10-batches-py/../../escaped", b"outside"),
    ("/tmp/escaped-absolute", b"outside"),
    ("cifar-10-batches-py/link", ("symlink", "../../escaped")),
    ("cifar-10-batches-py/link", ("symlink", "/etc/passwd")),
])
def test_an_unsafe_tarball_member_is_refused_and_nothing_is_written_outside(tmp_path, member):
    folder = tmp_path / "cache" / "datasets"
    folder.mkdir(parents=True)
    tarball = folder / "cifar-10-python.tar.gz"
    tarball.write_bytes(_tarball([("cifar-10-batches-py/data_batch_1", b"x"), member]))
    with pytest.raises(DatasetError, match=f"{tarball}: refused to extract"):
        fetching.extract_tarball(str(tarball), "cifar-10-batches-py")
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-10-python.tar.gz"]  # no staging left
    assert not (tmp_path / "cache" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not os.path.exists("/tmp/escaped-absolute")


# ----------------------------------------------------------------------------- the recorded data
def test_a_recorded_origin_reads_the_same_data_and_refuses_changed_files(server, cache, monkeypatch, tmp_path):
    publish(monkeypatch, server, "mnist", {"mnist.npz": mnist_npz()})
    first = load_dataset("mnist", str(tmp_path), log=lambda line: None)
    again = load_recorded_dataset("mnist", first.origin)
    np.testing.assert_array_equal(again.images, first.images)
    (cache / "mnist.npz").write_bytes(mnist_npz(seed=1))
    with pytest.raises(DatasetError, match="changed since this run was trained on it"):
        load_recorded_dataset("mnist", first.origin)
    (cache / "mnist.npz").unlink()
    with pytest.raises(DatasetError, match="it is gone"):
        load_recorded_dataset("mnist", first.origin)
    embedded = load_recorded_dataset("mnist", {"reader": "embedded", "images": 5000})
    assert embedded.images.shape[0] == 5000 and server.hits == ["/mnist.npz"]


def test_a_recorded_origin_finds_batches_in_a_subfolder(tmp_path):
    names = [f"data_batch_{i}" for i in range(1, 6)]
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for seed, name in enumerate(names):
        (folder / name).write_bytes(_cifar_batch(2, seed))
    first = load_dataset("cifar10", str(tmp_path / "cifar"))
    assert set(first.origin["sha256"]) == {f"cifar-10-batches-py/{name}" for name in names}
    np.testing.assert_array_equal(load_recorded_dataset("cifar10", first.origin).images, first.images)
