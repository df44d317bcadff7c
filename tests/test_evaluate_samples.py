"""evaluate.py --samples FILE refuses every file that is not a complete .npy of real floating-point
images in one line (exit code 2), before any data is loaded or any evaluator built, and never
waits on a file that is not one."""
import io
import json
import os
import pickle
import signal

import numpy as np
import pytest

import evaluate
import runs
from config import RunConfig

SHAPE = (64, 28, 28, 1)
FLOAT_IMAGES = "expected real floating-point images in [0, 1]"


class EvaluatorReachedError(Exception):
    """The file passed every check and evaluate_samples went on to load the run's data."""


@pytest.fixture(autouse=True)
def no_data_loaded(monkeypatch):
    """Every check of the file comes before the run's data is loaded and the evaluator built:
    reaching that point raises EvaluatorReachedError, so no test here trains a classifier."""
    def reached(*_args, **_kwargs):
        raise EvaluatorReachedError
    monkeypatch.setattr(runs, "load_run_dataset", reached)


def run_folder(tmp_path, **settings):
    """A folder holding only a run's config.json (MNIST's 5,000 embedded digits, 28 x 28 x 1)."""
    folder = tmp_path / "run"
    folder.mkdir()
    config = RunConfig(data={"reader": "embedded", "images": 5000}, image_shape=(28, 28, 1), **settings)
    (folder / "config.json").write_text(json.dumps(config.to_json()))
    return folder


def npy_bytes(array, **save):
    buffer = io.BytesIO()
    np.save(buffer, array, **save)
    return buffer.getvalue()


def header_bytes(shape, descr="<f4"):
    """A version 1.0 .npy header saying whatever it is asked to (np.save would not write these)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def error_line(path, capsys, cache_dir):
    """The one line of `evaluate.py --samples path`, which must fail with exit code 2."""
    assert evaluate.main(["--samples", str(path), "--cache-dir", str(cache_dir)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"evaluate.py: error: --samples {path}: "), lines[0]
    assert not captured.out
    return lines[0]


zeros = np.zeros(SHAPE, np.float32)
BAD_FILES = [  # (name, bytes of samples.npy, words the error holds)
    ("empty, as a stopped writer leaves it", b"", "empty (0 bytes), not a .npy file"),
    ("a negative dimension", header_bytes((-64, 28, 28, 1)), "a damaged .npy header (shape (-64, 28, 28, 1))"),
    ("a header that is no dict", header_bytes(SHAPE).replace(b"{", b"[", 1), "a damaged .npy header"),
    ("a dtype numpy does not know", header_bytes(SHAPE, descr="<q9"), "a damaged .npy header"),
    ("format version 3.0", b"\x93NUMPY\x03\x00" + header_bytes(SHAPE)[8:], "format version 3.0; expected 1.0 or 2.0"),
    ("a pickle", pickle.dumps(zeros), "not a .npy file (no NumPy header; pickles"),
    ("an object array", npy_bytes(np.empty(SHAPE, object), allow_pickle=True),
     f"dtype object (Python objects, a pickle); {FLOAT_IMAGES}"),
    ("a structured dtype", npy_bytes(np.zeros(SHAPE, [("grey", "<f4"), ("alpha", "<f4")])),
     f"dtype [('grey', '<f4'), ('alpha', '<f4')] (records or sub-arrays); {FLOAT_IMAGES}"),
    ("numeric strings", npy_bytes(np.full(SHAPE, "0.5")), f"dtype <U3 (strings); {FLOAT_IMAGES}"),
    ("numeric bytes", npy_bytes(np.full(SHAPE, b"0.5")), f"dtype |S3 (bytes); {FLOAT_IMAGES}"),
    ("dates", npy_bytes(np.zeros(SHAPE, "datetime64[D]")), f"dtype datetime64[D] (dates); {FLOAT_IMAGES}"),
    ("complex numbers", npy_bytes(zeros.astype(np.complex64)), f"dtype complex64 (complex numbers); {FLOAT_IMAGES}"),
    ("booleans", npy_bytes(zeros.astype(bool)), f"dtype bool (booleans); {FLOAT_IMAGES}"),
    ("0-255 pixels", npy_bytes(zeros.astype(np.uint8)), f"dtype uint8 (unsigned integers); {FLOAT_IMAGES}"),
    ("0/1 integers", npy_bytes(zeros.astype(np.int64)), f"dtype int64 (integers); {FLOAT_IMAGES}"),
    ("truncated", npy_bytes(zeros)[:-100],
     f"{128 + zeros.nbytes - 100:,} bytes, but its header promises {128 + zeros.nbytes:,} (float32, shape "
     f"(64, 28, 28, 1)); truncated, was its writer stopped?"),
    ("only a header", header_bytes(SHAPE), "truncated, was its writer stopped?"),
    ("two arrays in one file", npy_bytes(zeros) * 2, "more than one array?"),
]


@pytest.mark.parametrize("contents, message", [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_a_file_that_is_not_float_images_is_one_line(tmp_path, capsys, contents, message):
    path = run_folder(tmp_path) / "samples.npy"
    path.write_bytes(contents)
    assert message in error_line(path, capsys, tmp_path / "cache")


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    path = run_folder(tmp_path) / "samples.npy"
    os.mkfifo(path)

    def blocked(*_):
        raise AssertionError("evaluate.py waited on the named pipe")
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    try:
        line = error_line(path, capsys, tmp_path / "cache")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert line.endswith("a named pipe, not a regular file")


def test_a_folder_a_missing_file_and_a_missing_folder_are_named(tmp_path, capsys):
    folder = run_folder(tmp_path)
    (folder / "samples.npy").mkdir()
    assert error_line(folder / "samples.npy", capsys, tmp_path).endswith("a folder, not a regular file")
    assert error_line(folder / "other.npy", capsys, tmp_path).endswith(": no such file")
    missing = tmp_path / "missing" / "samples.npy"
    assert error_line(missing, capsys, tmp_path).endswith(": no such file")
    assert not (tmp_path / "missing").exists()


def test_an_unreadable_file_is_one_line(tmp_path, capsys, monkeypatch):
    path = run_folder(tmp_path) / "samples.npy"
    path.write_bytes(npy_bytes(zeros))
    path.chmod(0)
    real_open = os.open

    def as_without_root(name, flags, *args):  # root reads a file of mode 000: refuse as for anyone else
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)
    monkeypatch.setattr(os, "open", as_without_root)
    assert error_line(path, capsys, tmp_path).endswith("cannot open it: Permission denied")


def test_a_sound_file_of_each_float_dtype_reaches_the_evaluator(tmp_path):
    path = run_folder(tmp_path) / "samples.npy"
    for dtype in (np.float16, np.float32, ">f8"):
        np.save(path, zeros.astype(dtype))
        with pytest.raises(EvaluatorReachedError):
            evaluate.main(["--samples", str(path), "--cache-dir", str(tmp_path)])


def test_open_npy_maps_what_was_saved_in_any_order_and_byte_order(tmp_path):
    path = tmp_path / "images.npy"
    images = np.random.default_rng(0).uniform(0, 1, (5, 4, 3, 2)).astype(">f8")
    for array in (images, np.asfortranarray(images), images[:0]):
        np.save(path, array)
        mapped = evaluate.open_npy(str(path), "--samples x", "f", FLOAT_IMAGES)
        assert mapped.dtype == array.dtype and np.array_equal(mapped, array)


def test_a_wrong_shape_is_still_named_before_the_evaluator(tmp_path, capsys):
    path = run_folder(tmp_path) / "samples.npy"
    np.save(path, np.zeros((64, 32, 32, 1), np.float32))
    assert error_line(path, capsys, tmp_path).endswith("shape (64, 32, 32, 1), expected images of (28, 28, 1)")


def test_float64_beyond_float32_is_out_of_range_not_infinite():
    samples = np.zeros((2, 28, 28, 1))
    samples[1, 0, 0, 0] = 1e300
    with pytest.raises(runs.UsageError, match=r"values from 0 to 1e\+300; expected images in \[0, 1\]"):
        evaluate.check_samples(samples, "samples.npy")


LABELS = [  # (name, labels.npy beside 64 samples of a 10-class conditional run, words the error holds)
    ("floats", npy_bytes(np.zeros(64, np.float32)),
     "labels.npy beside it: dtype float32 (floating-point numbers); expected integer classes"),
    ("empty", b"", "labels.npy beside it: empty (0 bytes)"),
    ("fewer than the images", npy_bytes(np.zeros(10, np.int64)),
     "labels.npy beside it: shape (10,), expected one class per image, (64,)"),
    ("a class the run lacks", npy_bytes(np.arange(64) % 11),
     "labels.npy beside it: classes from 0 to 10, expected 0 to 9"),
]


@pytest.mark.parametrize("contents, message", [case[1:] for case in LABELS], ids=[case[0] for case in LABELS])
def test_bad_labels_beside_the_samples_are_one_line(tmp_path, capsys, contents, message):
    folder = run_folder(tmp_path, conditional=True, num_classes=10)
    np.save(folder / "samples.npy", zeros)
    (folder / "labels.npy").write_bytes(contents)
    assert message in error_line(folder / "samples.npy", capsys, tmp_path)


def test_sound_labels_reach_the_evaluator(tmp_path):
    folder = run_folder(tmp_path, conditional=True, num_classes=10)
    np.save(folder / "samples.npy", zeros)
    np.save(folder / "labels.npy", np.arange(64) % 10)
    with pytest.raises(EvaluatorReachedError):
        evaluate.main(["--samples", str(folder / "samples.npy"), "--cache-dir", str(tmp_path)])


def test_a_missing_out_dir_is_one_line_and_not_created(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert evaluate.main(["--out-dir", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"evaluate.py: error: --out-dir {missing}: no such folder"
    assert not missing.exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert evaluate.main(["--out-dir", str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == f"evaluate.py: error: --out-dir {a_file}: a file, not a folder"
