import gzip
import struct

import numpy as np
import pytest
from conftest import idx_bytes, write_mnist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpreprocess import DatasetError, MLPreProcess, load_dataset


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name_style", ["dash", "dot"])
def test_load_mnist_reads_raw_and_gz_files_scaled_to_unit_range(tmp_path, compress, name_style):
    raw_images, raw_labels = write_mnist(str(tmp_path), n=10, compress=compress, name_style=name_style)
    images, labels = MLPreProcess.load_mnist(str(tmp_path), "train")
    assert images.shape == (10, 28, 28) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == raw_labels.tolist()
    np.testing.assert_allclose(images, raw_images / 255.0, atol=1e-7)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_load_mnist_reads_the_test_split(tmp_path):
    write_mnist(str(tmp_path), n=7, kind="t10k")
    images, labels = MLPreProcess.load_mnist(str(tmp_path), "t10k")
    assert images.shape == (7, 28, 28) and labels.shape == (7,)


def _write(path, data, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(data)
    return str(path)


def _dataset(tmp_path, images_bytes, labels=(0, 0), compress=False):
    suffix = ".gz" if compress else ""
    _write(tmp_path / f"train-images-idx3-ubyte{suffix}", images_bytes, compress)
    _write(tmp_path / f"train-labels-idx1-ubyte{suffix}", idx_bytes(labels, 2049), compress)
    return str(tmp_path)


GOOD = idx_bytes(np.zeros((2, 28, 28), np.uint8), 2051)
BAD_FILES = {
    "wrong magic": (idx_bytes(np.zeros((2, 28, 28), np.uint8), 2049), "magic number 2049, expected 2051"),
    "truncated header": (GOOD[:10], "truncated IDX file"),
    "truncated body": (GOOD[:-5], "truncated"),
    "too long": (GOOD + b"\0", "too long"),
    "wrong dimensions": (idx_bytes(np.zeros((2, 20, 20), np.uint8), 2051), "20x20, expected 28x28"),
    "empty": (b"", "truncated IDX file"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_idx_files_raise_an_error_naming_the_file(tmp_path, case, compress):
    data, message = BAD_FILES[case]
    folder = _dataset(tmp_path, data, compress=compress)
    with pytest.raises(DatasetError, match=message) as caught:
        MLPreProcess.load_mnist(folder, "train")
    assert "train-images-idx3-ubyte" in str(caught.value)


def test_label_count_must_match_image_count(tmp_path):
    folder = _dataset(tmp_path, GOOD, labels=np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match="3 labels for 2 images"):
        MLPreProcess.load_mnist(folder, "train")


def test_missing_labels_file_is_named(tmp_path):
    _write(tmp_path / "train-images-idx3-ubyte", GOOD)
    with pytest.raises(DatasetError, match="no train labels file"):
        MLPreProcess.load_mnist(str(tmp_path), "train")


def test_corrupted_gzip_is_a_dataset_error(tmp_path):
    compressed = gzip.compress(GOOD)
    _write(tmp_path / "train-images-idx3-ubyte.gz", compressed[:20] + b"\xff" * 40)
    _write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8), 2049))
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        MLPreProcess.load_mnist(str(tmp_path), "train")


def test_training_images_come_from_the_folder_when_it_holds_mnist(tmp_path):
    write_mnist(str(tmp_path), n=12)
    dataset = load_dataset("mnist", str(tmp_path))
    assert dataset.images.shape == (12, 28, 28, 1) and dataset.labels.shape == (12,)
    assert str(tmp_path) in dataset.source and dataset.test_images is None


def test_an_empty_folder_falls_back_to_the_embedded_digits(tmp_path):
    dataset = load_dataset("mnist", str(tmp_path))
    images, labels, source = dataset.images, dataset.labels, dataset.source
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.9
    assert np.bincount(labels).tolist() == [500] * 10
    assert "embedded" in source and "--data-dir" in source and "\n" not in source


# ----------------------------------------------------------------------------- fuzzing


def _idx_like():
    """Byte strings near the IDX format: valid headers with any body, and arbitrary bytes."""
    header = st.tuples(st.sampled_from([2051, 2049, 0, 2052]), st.integers(0, 4), st.integers(0, 30),
                       st.integers(0, 30)).map(lambda h: struct.pack(">4I", *h))
    return st.one_of(st.binary(max_size=64), st.tuples(header, st.binary(max_size=4000)).map(b"".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_idx_like(), compress=st.booleans())
def test_any_bytes_give_arrays_or_a_dataset_error(tmp_path, data, compress):
    path = str(tmp_path / ("f.gz" if compress else "f"))
    with open(path, "wb") as stream:
        stream.write(gzip.compress(data) if compress else data)
    for magic in (2051, 2049):
        try:
            array = MLPreProcess.read_idx(path, magic)
        except DatasetError as error:
            assert path in str(error)
        else:
            assert array.dtype == np.uint8 and array.size == len(data) - 4 * (1 + (magic & 0xFF))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=200))
def test_any_gzip_garbage_is_a_dataset_error(tmp_path, garbage):
    path = str(tmp_path / "f.gz")
    with open(path, "wb") as stream:
        stream.write(b"\x1f\x8b" + garbage)
    with pytest.raises(DatasetError) as caught:  # random bytes after a gzip magic are never an IDX file
        MLPreProcess.read_idx(path, 2051)
    assert path in str(caught.value)
