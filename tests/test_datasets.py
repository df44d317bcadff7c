"""Fashion-MNIST, CIFAR-10 (both formats, and a malicious pickle) and a folder of images."""
import os
import pickle

import numpy as np
import pytest
from conftest import write_mnist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mlpreprocess
from mlpreprocess import (
    FASHION_MNIST_SYSTEM_DIR,
    DatasetError,
    load_cifar10,
    load_dataset,
    read_cifar_binary_batch,
    read_cifar_python_batch,
)


def _cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def write_cifar_python(folder, n=6, names=("data_batch_1", "data_batch_2", "data_batch_3",
                                           "data_batch_4", "data_batch_5", "test_batch")):
    os.makedirs(folder, exist_ok=True)
    for seed, name in enumerate(names):
        data, labels = _cifar_arrays(n, seed)
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as stream:
            pickle.dump(batch, stream, protocol=2)


def write_cifar_binary(folder, n=6, names=("data_batch_1", "data_batch_2", "data_batch_3",
                                           "data_batch_4", "data_batch_5", "test_batch")):
    os.makedirs(folder, exist_ok=True)
    for seed, name in enumerate(names):
        data, labels = _cifar_arrays(n, seed)
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
        with open(os.path.join(folder, name + ".bin"), "wb") as stream:
            stream.write(records.tobytes())


@pytest.mark.parametrize("writer", [write_cifar_python, write_cifar_binary])
def test_both_cifar_formats_give_the_same_images(tmp_path, writer):
    writer(str(tmp_path))
    images, labels = load_cifar10(str(tmp_path), "train")
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.float32 and labels.shape == (30,)
    data, first_labels = _cifar_arrays(6, 0)
    # Channel planes R, G, B of 32x32 each become the last axis.
    expected = data.reshape(6, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0
    np.testing.assert_allclose(images[:6], expected, atol=1e-7)
    assert labels[:6].tolist() == first_labels
    dataset = load_dataset("cifar10", str(tmp_path))
    assert dataset.image_shape == (32, 32, 3) and dataset.test_images.shape == (6, 32, 32, 3)


class _RunsCode:
    """A pickle payload that would create a file if unpickled with the standard loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as stream:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, stream, protocol=2)
    with pytest.raises(DatasetError, match=r"refused to load (posix|os)\.system"):
        read_cifar_python_batch(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_batch_with_numpy_integer_labels_loads(tmp_path, protocol):
    data, labels = _cifar_arrays(4, 1)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as stream:  # labels as numpy scalars, as a batch written with numpy has
        pickle.dump({b"data": data, b"labels": [np.int64(v) for v in labels]}, stream, protocol=protocol)
    images, read_labels = read_cifar_python_batch(str(path))
    assert read_labels.tolist() == list(labels) and images.shape == (4, 32, 32, 3)


@pytest.mark.parametrize("scalar", [np.complex128(1j), np.str_("7"), np.datetime64(1, "s")])
def test_numpy_scalars_that_are_not_plain_numbers_are_refused(tmp_path, scalar):
    data, _ = _cifar_arrays(1, 1)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [scalar]}, protocol=2))
    with pytest.raises(DatasetError, match="data_batch_1"):
        read_cifar_python_batch(str(path))


@pytest.mark.parametrize("payload", [b"", b"not a pickle", pickle.dumps([1, 2, 3], protocol=2),
                                     pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]})])
def test_bad_cifar_python_batches_are_dataset_errors(tmp_path, payload):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match="data_batch_1"):
        read_cifar_python_batch(str(path))


def test_bad_cifar_binary_batches_are_dataset_errors(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(b"\0" * 3072)
    with pytest.raises(DatasetError, match="whole number of 3073-byte"):
        read_cifar_binary_batch(str(path))
    path.write_bytes(bytes([12]) + b"\0" * 3072)
    with pytest.raises(DatasetError, match="label 12"):
        read_cifar_binary_batch(str(path))


def test_missing_cifar_batches_name_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="no CIFAR-10 train batches"):
        load_dataset("cifar10", str(tmp_path))


def _save(image, path):
    image.save(path)
    return path


def test_folder_of_images_crops_resizes_and_reports_unreadable_files(tmp_path):
    rng = np.random.default_rng(0)
    _save(Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)), tmp_path / "wide.png")
    (tmp_path / "sub").mkdir()
    _save(Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)), tmp_path / "sub" / "b.jpg")
    _save(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)), tmp_path / "grey.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    log = []
    dataset = load_dataset("folder", str(tmp_path), image_size=32, log=log.append)
    assert dataset.images.shape == (3, 32, 32, 3)  # one colour image: colour wins
    assert dataset.labels is None
    assert any("broken.png" in line for line in log)
    assert log[-1] == "1 of 4 files skipped as unreadable"
    grey = load_dataset("folder", str(tmp_path), image_size=32, channels=1, log=log.append)
    assert grey.images.shape == (3, 32, 32, 1)


def test_folder_centre_crop_keeps_the_middle(tmp_path):
    picture = np.zeros((20, 60), np.uint8)
    picture[:, 20:40] = 255  # the central square is white, the sides black
    _save(Image.fromarray(picture), tmp_path / "a.png")
    images = load_dataset("folder", str(tmp_path), image_size=32).images
    assert images.shape == (1, 32, 32, 1) and images.min() > 0.95


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no PNG or JPEG images"):
        load_dataset("folder", str(tmp_path), image_size=32)


def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path):
    write_mnist(str(tmp_path), n=9)
    write_mnist(str(tmp_path), n=4, kind="t10k")
    dataset = load_dataset("fashion_mnist", str(tmp_path))
    assert dataset.images.shape == (9, 28, 28, 1) and dataset.test_images.shape == (4, 28, 28, 1)
    assert "Fashion-MNIST" in dataset.source


def test_fashion_mnist_without_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(mlpreprocess, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(DatasetError, match="cannot resolve the name .*dataset-fashion-mnist"):
        load_dataset("fashion_mnist", str(tmp_path), log=lambda line: None)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_SYSTEM_DIR), reason="Debian's dataset-fashion-mnist absent")
def test_the_installed_fashion_mnist_files_load():
    dataset = load_dataset("fashion_mnist")
    assert dataset.images.shape == (60000, 28, 28, 1) and dataset.images.dtype == np.float32
    assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
    assert dataset.test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(dataset.labels).tolist() == [6000] * 10


# ----------------------------------------------------------------------------- fuzzing

_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _pickle_like():
    """Arbitrary bytes, truncated or bit-flipped real batches, and pickles of odd objects."""
    data, labels = _cifar_arrays(3, 0)
    real = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    odd = st.recursive(st.none() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.binary(max_size=6), inner,
                                                                                   max_size=3), max_leaves=8)
    return st.one_of(
        st.binary(max_size=300),
        st.integers(0, len(real)).map(lambda n: real[:n]),
        st.tuples(st.integers(0, len(real) - 1), st.integers(1, 255)).map(
            lambda c: real[:c[0]] + bytes([real[c[0]] ^ c[1]]) + real[c[0] + 1:]),
        odd.map(lambda value: pickle.dumps(value, protocol=2)),
        # Labels as numpy scalars of any simple dtype, numeric or not.
        st.lists(st.sampled_from([np.int64(3), np.uint8(9), np.float32(2.0), np.bool_(True), np.int16(-1),
                                  np.complex64(1), np.str_("a"), np.bytes_(b"b")]), min_size=3, max_size=3)
        .map(lambda labels: pickle.dumps({b"data": data, b"labels": labels}, protocol=2)))


def _arrays_or_dataset_error(read, path):
    """read(path) -> (images, labels), or None after checking its DatasetError names the file."""
    try:
        return read(str(path))
    except DatasetError as error:
        assert str(path) in str(error)
        return None


@_FUZZ
@given(payload=_pickle_like())
def test_any_python_batch_bytes_give_arrays_or_a_dataset_error(tmp_path, payload):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    result = _arrays_or_dataset_error(read_cifar_python_batch, path)
    if result is not None:
        images, labels = result
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3) and len(labels) == len(images)


@_FUZZ
@given(payload=st.one_of(st.binary(max_size=7000), st.integers(1, 3).map(lambda n: bytes(3073 * n))))
def test_any_binary_batch_bytes_give_arrays_or_a_dataset_error(tmp_path, payload):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(payload)
    result = _arrays_or_dataset_error(read_cifar_binary_batch, path)
    if result is not None:
        images, labels = result
        assert images.shape == (len(payload) // 3073, 32, 32, 3) and labels.max() <= 9
