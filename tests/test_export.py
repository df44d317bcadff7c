"""--export: a SavedModel and a TFLite file that a process without this project loads, equal to
the session's images, recorded in the manifest, and never replacing a good export with a bad one."""
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import outside_images, run_main, tmpfs

import export
import latent
import main1
import runs
import sampling


def test_the_export_is_written_checked_and_recorded(exported_run):
    out, stdout = exported_run
    assert "exported iteration 20 (averaged generator)" in stdout and "TFLite" in stdout
    root = Path(out, "export")
    assert (root / "generator.tflite").stat().st_size > 100_000
    metadata = json.loads((root / "saved_model" / "assets" / "metadata.json").read_text())
    assert metadata["iteration"] == 20 and metadata["z_dim"] == 64 and metadata["num_classes"] == 10
    assert metadata["image_shape"] == [28, 28, 1] and metadata["recipe"] == "tuned"
    assert metadata["class_names"][:3] == ["0", "1", "2"] and "uniform" in metadata["z_distribution"]
    written = set(json.loads(Path(out, "manifest.json").read_text())["files"])
    on_disk = {str(path.relative_to(out)) for path in root.rglob("*") if path.is_file()}
    assert on_disk and on_disk <= written  # --overwrite removes every file of it
    assert not os.path.exists(os.path.join(out, export.STAGING_DIR))
    assert not os.path.exists(os.path.join(out, export.RETIRED_DIR))


def test_a_process_without_the_project_draws_the_sessions_images(exported_run, tmp_path):
    out, _ = exported_run
    config = runs.read_config(out)
    sampler, _ = sampling.restore_run(config)
    z = latent.uniform_noise(np.random.default_rng(8), 12, 64)
    labels = np.arange(12) % 10
    expected = sampler(z, labels=labels)
    images, metadata, sampled = outside_images(Path(out, "export", "saved_model"), tmp_path, z, labels)
    assert images.shape == (12, 28, 28, 1) and images.dtype == np.float32
    assert np.abs(images - expected).max() <= 1e-6
    assert metadata["dataset"] == "mnist" and metadata["conditional"]
    assert sampled.shape == (4, 28, 28, 1) and sampled.min() >= 0 and sampled.max() <= 1
    # The run is trained enough for its images to depend on the noise and on the class.
    assert np.abs(images[0] - images[1]).max() > 0.05
    one = outside_images(Path(out, "export", "saved_model"), tmp_path, z[:1], [3])[0]
    three = sampler(z[:1], labels=[3])
    assert np.abs(one - three).max() <= 1e-6 and np.abs(one - sampler(z[:1], labels=[4])).max() > 0.01
    lite = export.tflite_images(Path(out, "export", "generator.tflite").read_bytes(), z, labels)
    assert np.abs(lite - expected).max() <= 1e-4


def test_exporting_again_replaces_the_export_and_keeps_a_users_files_out(exported_run, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(exported_run[0], out)
    before = Path(out, "export", "generator.tflite").read_bytes()
    code, stdout, stderr = run_main("--out-dir", out, "--export", "--generator", "raw")
    assert code == 0, stderr
    assert "(raw generator)" in stdout and Path(out, "export", "generator.tflite").read_bytes() != before
    assert json.loads(Path(out, "export", "saved_model", "assets", "metadata.json").read_text())["generator"] == "raw"
    assert not os.path.exists(os.path.join(out, export.RETIRED_DIR))
    Path(out, "export", "notes.txt").write_text("mine")
    code, _, stderr = run_main("--out-dir", out, "--export")
    assert code == 2 and "export holds files this program did not write (export/notes.txt)" in stderr
    assert Path(out, "export", "notes.txt").read_text() == "mine"


def test_a_full_disk_during_the_export_keeps_the_previous_one(exported_run, tmp_path):
    source = exported_run[0]
    size = sum(path.stat().st_size for path in Path(source).rglob("*") if path.is_file())
    with tmpfs(tmp_path / "disk", f"{size // 1024 + 1500}k") as disk:  # room for the run, not a second export
        out = os.path.join(disk, "run")
        shutil.copytree(source, out)
        before = {path: path.read_bytes() for path in Path(out, "export").rglob("*") if path.is_file()}
        code, _, stderr = run_main("--out-dir", out, "--export", "--generator", "raw")
        assert code == 1, stderr
        assert stderr.strip().splitlines()[-1].startswith("main1.py: error: cannot write the export in")
        assert {path: path.read_bytes() for path in Path(out, "export").rglob("*") if path.is_file()} == before
        assert not os.path.exists(os.path.join(out, export.STAGING_DIR))


@pytest.mark.parametrize("flags, message", [
    (("--export", "--generator", "raw-batch-stats"), "would depend on its batch; export averaged or raw"),
    (("--export", "--label", "3"), "--label goes with --sample or --morph"),
    (("--export", "--port", "9000"), "--host and --port go with --explore"),
])
def test_bad_export_flags_are_one_line(exported_run, capsys, flags, message):
    assert main1.main(["--out-dir", exported_run[0], *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


class FakeSampler:
    def __init__(self):
        self.gan = type("Gan", (), {"z_dim": 4, "num_classes": 0})()

    def __call__(self, z, generator=None, labels=None):
        return np.tile(np.asarray(z)[:, :1, None, None], (1, 2, 2, 1))


@pytest.mark.parametrize("saved_model_error, tflite_error, problem", [
    (0.0, 0.0, None), (2e-6, 0.0, "saved model images differ"), (0.0, 3e-4, "tflite images differ"),
    (float("nan"), 0.0, "saved model images differ")])
def test_the_check_refuses_images_that_differ_from_the_sessions(monkeypatch, saved_model_error, tflite_error,
                                                                problem):
    sampler = FakeSampler()
    monkeypatch.setattr(export, "load_saved_model", lambda path: lambda z, labels=None: sampler(z) + saved_model_error)
    monkeypatch.setattr(export, "tflite_images", lambda model, z, labels=None: sampler(z) + tflite_error)
    if problem is None:
        assert export.check_export(sampler, "raw", "path", b"", seed=1)["tflite"] == 0.0
    else:
        with pytest.raises(export.ExportError, match=problem):
            export.check_export(sampler, "raw", "path", b"", seed=1)


def test_an_export_stopped_mid_swap_is_recovered(tmp_path, monkeypatch):
    """Killed between its two renames, an export leaves the old one under .export.old: the next
    export puts it back before it begins, so no good export is lost."""
    with runs.RunFolder(str(tmp_path)) as folder:
        names, folders = export._expected(export.RETIRED_DIR)
        folder.claim(*names, folders=folders)
        for name in names:
            Path(folder.join(name)).write_text("old")
        monkeypatch.setattr(sampling, "restore_run", lambda *args: (_ for _ in ()).throw(RuntimeError("stop")))
        config = type("Config", (), {"seed": 1})()
        with pytest.raises(RuntimeError, match="stop"):
            export.export_run(folder, config, "raw", 1)
        assert Path(folder.join("export", "generator.tflite")).read_text() == "old"
        assert not os.path.exists(folder.join(export.RETIRED_DIR))


def test_metadata_says_what_the_generator_is():
    config = main1.config_from({"dataset": "fashion_mnist", "conditional": True, "recipe": "tuned", "seed": 2,
                                "image_shape": (28, 28, 1), "num_classes": 10})
    info = export.metadata(config, 600, "averaged")
    assert info["class_names"][0] == "T-shirt/top" and info["iteration"] == 600 and info["conditioning"] == "projection"
    assert info["image_shape"] == [28, 28, 1] and info["z_dim"] == 64 and info["seed"] == 2
    assert "label [batch] int64" in info["signatures"]["serving_default"]


def _copy_of(exported_run, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(exported_run[0], out)
    return out, {path: path.read_bytes() for path in Path(out, "export").rglob("*") if path.is_file()}


def _signal_then(function, signum=signal.SIGINT):
    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return function(*args, **kwargs)
    return wrapped


def test_a_signal_before_the_swap_keeps_the_previous_export_and_says_so(exported_run, tmp_path, monkeypatch, capsys):
    out, before = _copy_of(exported_run, tmp_path)
    monkeypatch.setattr(export, "check_export", _signal_then(export.check_export))
    assert main1.main(["--out-dir", out, "--export", "--generator", "raw"]) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"main1.py: stopped by SIGINT; the previous export in {os.path.join(out, 'export')} is unchanged"
    assert {path: path.read_bytes() for path in Path(out, "export").rglob("*") if path.is_file()} == before
    assert not os.path.exists(os.path.join(out, export.STAGING_DIR))


def test_a_signal_during_the_swap_waits_for_it_and_says_the_new_export_is_in_place(exported_run, tmp_path,
                                                                                    monkeypatch, capsys):
    out, _ = _copy_of(exported_run, tmp_path)
    monkeypatch.setattr(export, "_swap_into_place", _signal_then(export._swap_into_place, signal.SIGTERM))
    assert main1.main(["--out-dir", out, "--export", "--generator", "raw"]) == 143
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"main1.py: stopped by SIGTERM; the new export of iteration 20 is in place in "
                    f"{os.path.join(out, 'export')}")
    assert json.loads(Path(out, "export", "saved_model", "assets", "metadata.json").read_text())["generator"] == "raw"
    assert not os.path.exists(os.path.join(out, export.RETIRED_DIR))
    assert not os.path.exists(os.path.join(out, export.STAGING_DIR))


def test_a_signal_a_finalizer_swallowed_still_ends_the_command_with_its_code(exported_run, tmp_path, monkeypatch,
                                                                           capsys):
    """Python ignores an exception raised in a finalizer (it prints 'Exception ignored'); the
    export still learns of the signal, installs what it checked, and exits 130 saying so."""
    out, _ = _copy_of(exported_run, tmp_path)
    check = export.check_export

    def swallowed(*args, **kwargs):
        runs._RECEIVED.append(signal.SIGINT)  # what the handler records before its exception is lost
        return check(*args, **kwargs)
    monkeypatch.setattr(export, "check_export", swallowed)
    assert main1.main(["--out-dir", out, "--export", "--generator", "raw"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"the new export of iteration 20 is in place in {os.path.join(out, 'export')}")


def test_an_export_folder_that_is_a_link_or_a_file_is_refused_and_left_alone(exported_run, tmp_path, capsys):
    out, _ = _copy_of(exported_run, tmp_path)
    shutil.rmtree(os.path.join(out, "export"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(out, "export"))
    assert main1.main(["--out-dir", out, "--export"]) == 2
    assert f"export is a symbolic link to {elsewhere}" in capsys.readouterr().err
    assert os.path.islink(os.path.join(out, "export")) and not os.path.exists(os.path.join(out, export.RETIRED_DIR))
    os.remove(os.path.join(out, "export"))
    Path(out, "export").write_text("a file")
    assert main1.main(["--out-dir", out, "--export"]) == 2
    assert "export is not a folder" in capsys.readouterr().err and Path(out, "export").read_text() == "a file"


@pytest.mark.parametrize("kind, flags", [
    ("unconditional", ("--recipe", "original")),
    ("colour", ("--dataset", "cifar10")),
    ("projection", ("--conditional", "--recipe", "tuned")),
    # Trained with every lever of the screens: a penalty's branch functions stay out of the export.
    ("penalised", ("--recipe", "fast", "--augment", "translation+cutout", "--relativistic", "--gradient-penalty", "1",
                   "--penalty-every", "2")),
])
def test_every_kind_of_model_exports_what_a_process_without_the_project_draws(data_dir, tmp_path, kind, flags):
    """The README's serving_default(z=...) call (with label= for a conditional run) on an
    unconditional, a colour and a projection-conditioned run: the session's images, of the run's shape."""
    if kind == "colour":
        from test_datasets import write_cifar_binary

        data = str(tmp_path / "cifar")
        write_cifar_binary(data, n=8)
    else:
        data = data_dir
    out = str(tmp_path / "run")
    code, _, stderr = run_main("--data-dir", data, "--out-dir", out, *flags, "--steps", 4, "--snapshot-every", 2,
                               "--batch-size", 4, "--seed", 3)
    assert code == 0, stderr
    code, stdout, stderr = run_main("--out-dir", out, "--export")
    assert code == 0, stderr
    assert "exported iteration 4 (averaged generator)" in stdout
    config = runs.read_config(out)
    assert config.image_shape == ((32, 32, 3) if kind == "colour" else (28, 28, 1))
    assert config.num_classes == (10 if kind == "projection" else 0)
    assert kind != "projection" or config.conditioning == "projection"
    sampler, _ = sampling.restore_run(config)
    z = latent.uniform_noise(np.random.default_rng(9), 5, config.z_dim)
    labels = np.array([0, 7, 3, 9, 1]) if config.num_classes else None
    expected = sampler(z, labels=labels)
    saved_model = Path(out, "export", "saved_model")
    images, metadata, sampled = outside_images(saved_model, tmp_path, z, labels)
    assert images.shape == (5, *config.image_shape) and images.dtype == np.float32
    assert np.abs(images - expected).max() <= 1e-6
    assert metadata["image_shape"] == list(config.image_shape) and metadata["conditional"] == bool(labels is not None)
    assert metadata["conditioning"] == ("projection" if kind == "projection" else None)
    assert sampled.shape == (4, *config.image_shape)
    lite = export.tflite_images(Path(out, "export", "generator.tflite").read_bytes(), z, labels)
    assert np.abs(lite - expected).max() <= 1e-4


def test_an_export_that_fails_its_check_keeps_the_previous_one(exported_run, tmp_path, monkeypatch, capsys):
    """A real export whose loaded SavedModel draws images 1e-3 off the session's: refused in one
    line that gives the difference, the export in place unchanged, no staging folder left."""
    out, before = _copy_of(exported_run, tmp_path)
    load = export.load_saved_model

    def off_by_a_thousandth(path):
        images = load(path)
        return lambda z, labels=None: images(z, labels) + 1e-3
    monkeypatch.setattr(export, "load_saved_model", off_by_a_thousandth)
    assert main1.main(["--out-dir", out, "--export", "--generator", "raw"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "main1.py: error: the saved model images differ from the session's by 0.001 (at most 1e-06 allowed)"), lines
    assert {path: path.read_bytes() for path in Path(out, "export").rglob("*") if path.is_file()} == before
    assert not os.path.exists(os.path.join(out, export.STAGING_DIR))
    assert not os.path.exists(os.path.join(out, export.RETIRED_DIR))
