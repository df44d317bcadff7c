"""Shared test helpers: synthetic MNIST-format files and a way to run main1.py; no test touches
the internet or the user's Keras dataset cache."""
import contextlib
import gzip
import importlib.util
import io
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def script(name):
    """A module of scripts/ (which is not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope="session")
def keras_home(tmp_path_factory):
    """A fresh Keras cache for the whole session, inherited by the processes the tests start."""
    folder = tmp_path_factory.mktemp("keras-home")
    os.environ["KERAS_HOME"] = str(folder)
    return folder


def op_determinism():
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.framework import config  # the way back is not in the public API

    return config.is_op_determinism_enabled()


@contextlib.contextmanager
def op_determinism_as_it_was():
    """A training run in this process (main1.main) turns TensorFlow's op determinism on for the
    whole process (training.configure_tensorflow); other tests build unseeded graphs, which it
    refuses, so it is turned off again afterwards."""
    before = op_determinism()
    try:
        yield
    finally:
        if not before and op_determinism():
            from tensorflow.python.framework import config

            config.disable_op_determinism()


@pytest.fixture(autouse=True)
def no_op_determinism_left_behind():
    with op_determinism_as_it_was():
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A tiny MNIST-format dataset (64 random images) that the tests only read."""
    folder = tmp_path_factory.mktemp("mnist")
    write_mnist(str(folder), n=64)
    return str(folder)


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory):
    """One evaluator cache for the session: runs on the same tiny data share their classifier."""
    return str(tmp_path_factory.mktemp("classifier-cache"))


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """In this process only the loopback resolves, as on a machine without a network."""
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"a test tried to reach {host}")
        return resolve(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def idx_bytes(array, magic):
    """An IDX file's bytes for a uint8 array (big-endian header: magic, then each dimension)."""
    array = np.asarray(array, dtype=np.uint8)
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def write_mnist(folder, n=64, kind="train", compress=True, side=28, seed=0, name_style="dash"):
    """Write a tiny MNIST-format dataset; returns (uint8 images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    os.makedirs(folder, exist_ok=True)
    for what, array, magic, dims in (("images", images, 2051, 3), ("labels", labels, 2049, 1)):
        stem = f"{kind}-{what}-idx{dims}-ubyte" if name_style == "dash" else f"{kind}-{what}.idx{dims}-ubyte"
        data = idx_bytes(array, magic)
        if compress:
            with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as stream:
                stream.write(data)
        else:
            with open(os.path.join(folder, stem), "wb") as stream:
                stream.write(data)
    return images, labels


TF_NOISE = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ")


def run_main(*args, timeout=300, process=False):
    """main1.py's command line -> (exit code, stdout, stderr without TensorFlow's start-up lines).

    In this process by default (main1.main, from the project folder, as a new process would
    start); `process=True` for what only a real process shows (its exit, its locks, signals)."""
    if not process:
        import main1

        stdout, stderr = io.StringIO(), io.StringIO()
        with (op_determinism_as_it_was(), contextlib.chdir(ROOT), contextlib.redirect_stdout(stdout),
              contextlib.redirect_stderr(stderr)):
            code = main1.main([str(arg) for arg in args])
        return code, stdout.getvalue(), stderr.getvalue()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "main1.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith(TF_NOISE))
    return result.returncode, result.stdout, stderr


@contextlib.contextmanager
def tmpfs(folder, size):
    """A small filesystem of `size` (tmpfs syntax, "25m") mounted at `folder`; skips the test
    where mounting needs the root this process lacks."""
    os.makedirs(folder, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the tests need root for it)")
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def toy_digits(n, seed, offset=0):
    """Three easily told apart classes: a bright bar at one of three heights."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 0.2, (n, 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 4 + 9 * label + offset:8 + 9 * label + offset, :, 0] = 1.0
    return images, labels


@pytest.fixture(scope="session")
def exported_run(data_dir, tmp_path_factory):
    """A tiny conditional run (tuned recipe, so its images already differ by noise and class)
    and its --export: (run folder, stdout of the export)."""
    out = str(tmp_path_factory.mktemp("exported"))
    code, _, stderr = run_main("--steps", 20, "--data-dir", data_dir, "--out-dir", out, "--conditional",
                               "--recipe", "tuned", "--conditioning", "concat", "--batch-size", 8,
                               "--snapshot-every", 10, "--seed", 5)
    assert code == 0, stderr
    code, stdout, stderr = run_main("--out-dir", out, "--export")
    assert code == 0, stderr
    return out, stdout


# Draws images with a SavedModel in a fresh interpreter that cannot import this project: -I drops
# the current folder, PYTHONPATH and user site-packages from sys.path, and it runs in a temp folder.
OUTSIDE_LOADER = """
import importlib.util, json, sys
import numpy as np
import tensorflow as tf
assert all(importlib.util.find_spec(name) is None for name in ("model", "export", "main1", "sampling"))
path, request, answer = sys.argv[1:4]
inputs = dict(np.load(request))
model = tf.saved_model.load(path)
serve = model.signatures["serving_default"]
images = serve(**{name: tf.constant(value) for name, value in inputs.items()})["images"].numpy()
info = json.loads(model.metadata_json.numpy())
drawn = model.signatures["sample"](seed=tf.constant(3, tf.int64), count=tf.constant(4))
np.savez(answer, images=images, metadata=json.dumps(info), sampled=drawn["images"].numpy())
"""


def outside_images(saved_model, tmp_path, z, labels=None):
    """(images, metadata, 4 images of the `sample` signature) of a SavedModel loaded by a process
    that has TensorFlow and nothing of this project."""
    import json

    request, answer = tmp_path / "request.npz", tmp_path / "answer.npz"
    inputs = {"z": np.asarray(z, np.float32)}
    if labels is not None:
        inputs["label"] = np.asarray(labels, np.int64)
    np.savez(request, **inputs)
    result = subprocess.run([sys.executable, "-I", "-c", OUTSIDE_LOADER, str(saved_model), str(request), str(answer)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(answer) as values:
        return values["images"], json.loads(str(values["metadata"])), values["sampled"]
