"""A run folder on disk: its config, locks, manifest, history and checkpoints, and the errors
that say in one line what is wrong with any of them.

A folder is shared with its user. The program deletes only what its manifest says it wrote;
one command trains in a folder at a time (an exclusive lock the OS drops when the process
dies), while readers (--sample, --morph, evaluate.py) may work beside it, each output written
by one command at a time.
"""
import argparse
import contextlib
import errno
import fcntl
import glob
import json
import os
import signal
import sys
import uuid

import numpy as np

import mlpreprocess
import outputs
from config import DEFINES_RUN, INVOCATION, MAY_CHANGE, ConfigError, ModelConfig, RunConfig, describe, info_differences
from outputs import error_summary

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "model.ckpt"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
TRAINER_LOCK = ".trainer.lock"   # held exclusively by the one command that trains here
USERS_LOCK = ".users.lock"       # held shared by every command using the folder; --overwrite: exclusively
MANIFEST_LOCK = ".manifest.lock"  # held while the manifest is read and rewritten
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class UsageError(Exception):
    """A user mistake (flag, file, folder): reported in one line, exit code 2."""


class CheckpointError(Exception):
    """A checkpoint could not be written; the previous one stays current."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside the training loop: a BaseException, like KeyboardInterrupt, so
    that no `except Exception` swallows it on its way to main's one line."""

    def __init__(self, signum, outcome=None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.outcome = outcome  # what the stop left behind, when the command knows better than main's line

    @property
    def exit_code(self):
        return SIGNAL_EXIT_CODES[self.signum]


_RECEIVED = []  # the signals raising_on_signals turned into Interrupted, in this block


@contextlib.contextmanager
def raising_on_signals(after=None):
    """Within the block SIGINT and SIGTERM raise Interrupted wherever the program is; after it
    the handlers before it come back, or `after` (signal.SIG_IGN: a program that has said how it
    ended, and only shuts down). A signal that arrives while Python runs a finalizer or a
    callback raises where the exception is ignored: signal_received() still knows of it."""
    def interrupt(signum, _frame):
        _RECEIVED.append(signum)
        raise Interrupted(signum)
    _RECEIVED.clear()
    with _signal_handler(interrupt, after):
        yield


@contextlib.contextmanager
def _signal_handler(handler, after=None):
    """`handler` for SIGINT and SIGTERM within the block; the handlers before it after it, or `after`."""
    previous = {signum: signal.signal(signum, handler) for signum in SIGNAL_EXIT_CODES}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before if after is None else after)


def signal_received():
    """The last SIGINT or SIGTERM received inside raising_on_signals, or None."""
    return _RECEIVED[-1] if _RECEIVED else None


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block has run (two renames that must not be split, a
    call into a library whose locks and worker threads an exception must not cut into): a signal
    that arrives meanwhile is noted, and handed to the handler that was in place once the block
    is done (raising Interrupted, setting the training loop's flag, or Python's KeyboardInterrupt).
    (Python runs signal handlers in the main thread whichever thread the signal reached, so the
    handlers are swapped rather than the signals blocked.)"""
    pending = []
    previous = {signum: signal.getsignal(signum) for signum in SIGNAL_EXIT_CODES}
    with _signal_handler(lambda signum, _frame: pending.append(signum)):
        yield
    for signum in pending:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler != signal.SIG_IGN:  # the default action, or a handler not set from Python
            _RECEIVED.append(signum)
            raise Interrupted(signum)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def cpu_has_bf16():
    """Whether /proc/cpuinfo lists bfloat16 instructions oneDNN can use."""
    try:
        with open("/proc/cpuinfo") as stream:
            flags = stream.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def machine():
    """What a timing was measured on: the CPU, its cores, bfloat16, threads, TensorFlow."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as stream:
            cpu = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        from importlib.metadata import version
        tensorflow = version("tensorflow")
    except Exception:  # noqa: BLE001 (not installed, or metadata unreadable: the record says so)
        tensorflow = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "bf16": cpu_has_bf16(), "tensorflow": tensorflow,
            "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "default")}


def timing_record(seconds, previous_path=None):
    """timing.json's content: {kind of work: seconds}, added to those of an earlier process of the
    same run (previous_path, when it still reads), the number of processes, and the machine."""
    record = {name: round(value, 3) for name, value in seconds.items()}
    processes = 1
    try:
        with open(previous_path) as stream:
            before = json.load(stream)
        for name, value in before.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "processes":
                record[name] = round(record.get(name, 0.0) + value, 3)
        processes += int(before.get("processes", 1))
    except (TypeError, OSError, ValueError, AttributeError):
        pass  # a new run, or an earlier timing.json that is gone or unreadable: this process's only
    return {**record, "processes": processes, "machine": machine()}


def session_config(bf16, model_config=None):
    """Session options: with bf16, oneDNN's automatic bfloat16 rewrite of the heavy ops.

    Ops run one at a time, each on every core: a second inter-op thread measured no faster
    (bench.py's speed, within 1%), and one at a time, a traced op's time is its own.
    A spectrally normalised discriminator (conv, bias, leaky ReLU with no batch norm between)
    makes TensorFlow 2.21's grappler remapper fail on the whole graph with an error line
    ("fanout ... LeakyReluGrad exist for missing node"), leaving the graph as if it were off;
    it is turned off for such models, and where gradient penalties differentiate D's gradient (the
    same failure), so that nothing is printed (the same speed, measured).
    """
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1)
    if model_config is not None and (model_config.uses("spectral_norm") or model_config.gradient_penalty):
        config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    if bf16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


# ----------------------------------------------------------------------------- config.json
def read_json(path, missing_message):
    try:
        with open(path) as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise UsageError(missing_message) from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not a text file") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def read_config(out_dir, missing_message=None, **invocation):
    """The RunConfig of the run in out_dir, checked as the flags are; UsageError naming the key
    when config.json is missing, unreadable or holds a value the run cannot use."""
    invocation.setdefault("out_dir", out_dir)
    path = os.path.join(out_dir, CONFIG_FILE)
    values = read_json(path, missing_message or f"--out-dir {out_dir} holds no run (no {CONFIG_FILE})")
    if isinstance(values, dict) and values.get("recipe") == "reference":
        raise UsageError(f"{path}: a reference.py run, which has no checkpoints to restore")
    try:
        return RunConfig.from_json(values, **invocation)
    except ConfigError as error:
        raise UsageError(f"{path}: key {error.field!r} {error.problem}"
                         if not error.field.startswith("(") else f"{path}: {error.problem}") from None
    except TypeError as error:  # an invocation setting that is not a field: a programming error
        raise RuntimeError(error) from None


def read_data_record(out_dir, missing_message):
    """(dataset, data record, image shape) of any run folder, reference.py's included."""
    path = os.path.join(out_dir, CONFIG_FILE)
    values = read_json(path, missing_message)
    if isinstance(values, dict) and values.get("recipe") == "reference":
        try:
            return RunConfig(dataset=values["dataset"], data=values["data"], out_dir=out_dir,
                             image_shape=tuple(values["image_shape"]), data_dir=values.get("data_dir"))
        except (KeyError, TypeError, ConfigError) as error:
            raise UsageError(f"{path}: not a readable reference.py config ({error})") from None
    return read_config(out_dir, missing_message)


# ----------------------------------------------------------------------------- recorded data
def _first_difference(recorded, now, base):
    """One line naming the first file added, removed or changed between two {name: SHA-256}."""
    for file_name in sorted(set(recorded) | set(now)):
        path = os.path.join(base, file_name)
        if file_name not in now:
            return f"{path}: this run was trained on it, and it is gone"
        if file_name not in recorded:
            return f"{path}: added since this run was trained on {base}"
        if recorded[file_name] != now[file_name]:
            return f"{path}: changed since this run was trained on it (SHA-256 was {recorded[file_name]})"
    return None


def _recorded_folder(name, origin, log, exclude):
    """A folder of images exactly as recorded: every file, and no other, with its SHA-256."""
    base, recorded = origin["path"], origin["sha256"]
    if not os.path.isdir(base):
        raise mlpreprocess.DatasetError(f"{base}: this run was trained on the images in it, and it is gone")
    now = {os.path.relpath(path, base): path for path in mlpreprocess.image_files(base, exclude)}
    digests = {file_name: mlpreprocess.file_digest(path) for file_name, path in now.items() if file_name in recorded}
    digests.update({file_name: "" for file_name in now if file_name not in recorded})
    difference = _first_difference(recorded, digests, base)
    if difference:
        raise mlpreprocess.DatasetError(difference)
    return mlpreprocess.folder_dataset(name, base, origin["image_size"], origin["channels"], log,
                           paths=[os.path.join(base, file_name) for file_name in sorted(recorded)])


def load_recorded_dataset(name, origin, log=print, exclude=()):
    """The exact data a run recorded in its config.json (Dataset.origin): the same reader on the
    same path, after checking every file still has the SHA-256 it had."""
    reader = origin["reader"]
    if reader == "embedded":
        return mlpreprocess.embedded_dataset(name, "as this run was trained: ")
    if reader == "folder":
        return _recorded_folder(name, origin, log, exclude)
    readers = mlpreprocess.FILE_READERS
    if reader not in readers:
        raise mlpreprocess.DatasetError(f"the run's config.json names an unknown data reader {reader!r}")
    base = origin["path"] if reader != "npz" else os.path.dirname(origin["path"])
    paths = {file_name: os.path.join(base, file_name) for file_name in origin["sha256"]}
    for path in paths.values():
        if not os.path.isfile(path):
            raise mlpreprocess.DatasetError(f"{path}: this run was trained on it, and it is gone")
    try:
        dataset, failure = readers[reader](name, origin["path"]), None
        digests = dataset.origin["sha256"]  # the reader hashes what it read: no second pass
    except mlpreprocess.DatasetError as error:  # unreadable now: say which file changed, if one did
        failure, digests = error, {file_name: mlpreprocess.file_digest(path) for file_name, path in paths.items()}
    for file_name, digest in origin["sha256"].items():
        if digests.get(file_name) != digest:
            raise mlpreprocess.DatasetError(f"{paths[file_name]}: changed since this run was trained on it "
                                            f"(SHA-256 was {digest})")
    if failure is not None:
        raise failure
    return dataset


def load_run_dataset(config, exclude=(), log=None):
    """The dataset of a run (a RunConfig): exactly the data it recorded, else the first place
    that has it. `exclude`: folders never read as data (the run's own out dir)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    if config.data:
        return load_recorded_dataset(config.dataset, config.data, log, exclude=exclude)
    return mlpreprocess.load_dataset(config.dataset, config.data_dir, config.image_size, config.channels, log,
                                     offline=config.offline, exclude=exclude)


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_state(out_dir):
    """TensorFlow's checkpoint index of the run, or None; a damaged index is a UsageError."""
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast

    folder = os.path.join(out_dir, CHECKPOINT_DIR)
    try:
        state = tf.train.get_checkpoint_state(folder)
    except Exception as error:  # noqa: BLE001 (protobuf's text parser raises its own ParseError)
        raise UsageError(f"{os.path.join(folder, 'checkpoint')} is damaged (not a checkpoint index: "
                         f"{error_summary(error)}); delete it to fall back to no checkpoint") from None
    if state is None or not state.model_checkpoint_path:
        return None
    return state


def latest_checkpoint(out_dir):
    """Path prefix of the run's latest complete checkpoint, or None."""
    state = checkpoint_state(out_dir)
    if state is None:
        return None
    path = state.model_checkpoint_path  # TensorFlow has joined a relative entry to the folder
    return path if glob.glob(path + ".index") else None


BEST_FILE = "best.json"       # which evaluation was best, and where its checkpoint is
BEST_PREFIX = "best.ckpt"     # checkpoints/best.ckpt-N: a copy that the Saver's pruning never sees


def chosen_checkpoint(out_dir, which="latest"):
    """--checkpoint latest|best|N -> the path prefix of that checkpoint of the run; UsageError
    naming what there is when it does not exist."""
    folder = os.path.join(out_dir, CHECKPOINT_DIR)
    if which == "latest":
        path = latest_checkpoint(out_dir)
        if not path:
            raise UsageError(f"no complete checkpoint in {folder}")
        return path
    if which == "best":
        best = read_json(os.path.join(out_dir, BEST_FILE),
                         f"--checkpoint best: the run in {out_dir} has no best checkpoint ({BEST_FILE} is written "
                         f"by a run with --eval-every)")
        if not isinstance(best, dict) or not isinstance(best.get("checkpoint"), str):
            raise UsageError(f"{os.path.join(out_dir, BEST_FILE)} does not name a checkpoint")
        named = os.path.normpath(best["checkpoint"])
        if os.path.isabs(named) or os.path.dirname(named) != CHECKPOINT_DIR \
                or not os.path.basename(named).startswith(BEST_PREFIX + "-"):
            raise UsageError(f"{os.path.join(out_dir, BEST_FILE)} names {best['checkpoint']!r}, which is not this "
                             f"run's {CHECKPOINT_DIR}/{BEST_PREFIX}-N; the file was edited or copied from another run")
        path = os.path.join(out_dir, named)
        if not glob.glob(path + ".index"):
            raise UsageError(f"--checkpoint best: {path} named in {BEST_FILE} is gone")
        return path
    for prefix in (CHECKPOINT_PREFIX, BEST_PREFIX):
        path = os.path.join(folder, f"{prefix}-{int(which)}")
        if glob.glob(path + ".index"):
            return path
    kept = sorted({checkpoint_step(p[:-len(".index")]) for p in glob.glob(os.path.join(folder, "*.ckpt-*.index"))})
    raise UsageError(f"--checkpoint {which}: no checkpoint of iteration {which} in {folder} "
                     f"(kept: {', '.join(map(str, kept)) or 'none'})")


def checkpoint_step(path):
    return int(path.rsplit("-", 1)[1])


def checkpoint_info(path):
    """What model a checkpoint holds (ModelConfig.info(); older ones lack the recipe), or None
    if unrecorded; a damaged checkpoint is a UsageError."""
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast

    from model import MODEL_INFO
    try:
        reader = tf.train.load_checkpoint(path)
        if not reader.has_tensor(MODEL_INFO):
            return None
        return json.loads(reader.get_tensor(MODEL_INFO))
    except (tf.errors.OpError, IndexError, ValueError) as error:  # IndexError: a truncated file
        raise UsageError(f"checkpoint {path} is damaged: {error_summary(error)}") from None


def restore_checkpoint(gan, session, path):
    """Restore a checkpoint written by a model of the same shape into `gan`'s session; a
    damaged or foreign checkpoint is a one-line UsageError."""
    import tensorflow as tf

    saved = checkpoint_info(path)
    if saved is not None and info_differences(saved, gan.info):
        raise UsageError(f"checkpoint {path} holds a {describe({**ModelConfig().info(), **saved})} model, "
                         f"not {describe(gan.info)}")
    try:
        with session.graph.as_default():  # the Saver needs graph mode even if eager is on
            gan.saver.restore(session, path)
    except (tf.errors.OpError, ValueError) as error:
        raise UsageError(f"cannot restore checkpoint {path}: {error_summary(error)}") from None


def save_checkpoint(gan, session, prefix, step=None):
    """Write a checkpoint of `gan` (weights, Adam slots, batch-norm averages, step) -> its path."""
    with session.graph.as_default():
        return gan.saver.save(session, prefix, global_step=step)


SAVER_SUFFIXES = (".index", ".data-00000-of-00001", ".meta")


def checkpoint_files(prefix):
    """Names (relative to the run folder) of the files a tf.compat.v1 Saver writes for one
    checkpoint, and the history files beside them."""
    relative = os.path.join(CHECKPOINT_DIR, os.path.basename(prefix))
    return [relative + suffix for suffix in SAVER_SUFFIXES + History.FILES]


def checkpoint_temporary(prefix):
    """(folder, files) the Saver writes while it saves `prefix` and removes when done."""
    folder = os.path.join(CHECKPOINT_DIR, os.path.basename(prefix) + "_temp")
    return folder, [os.path.join(folder, "part-00000-of-00001" + suffix) for suffix in SAVER_SUFFIXES[:2]]


# ----------------------------------------------------------------------------- locks
def _open_lock(path, readers_may_skip):
    """A file descriptor to flock `path` with; None where a reader cannot create it (a
    read-only folder, which no trainer can write either)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        if not readers_may_skip or error.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None


def _holder(path):
    """'process 123 (main1.py --out-dir x)' from a lock file, or 'another process'."""
    try:
        with open(path) as stream:
            text = stream.read().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return text or "another process"


def _stamp(descriptor):
    command = " ".join(os.path.basename(part) if i == 0 else part for i, part in enumerate(sys.argv))
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"process {os.getpid()} ({command})\n".encode(), 0)


def _try_lock(descriptor, mode):
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class RunFolder:
    """The out dir of a run: its locks, its manifest and the paths of the files it writes.

    Every output is named through claim() before it is written: the manifest (written
    atomically, under its own lock) then lists it, and --overwrite deletes exactly what it lists.
    """

    def __init__(self, path):
        self.path = path
        self._locks = []  # descriptors kept open: the locks last as long as the process

    def join(self, *names):
        return os.path.join(self.path, *names)

    def __enter__(self):
        return self

    def __exit__(self, *_exception):
        """The command is over: its locks go (as they would when the process ends)."""
        for descriptor in self._locks:
            os.close(descriptor)
        self._locks = []

    # -- locks
    def lock_for_training(self, overwrite=False):
        """Become the folder's one trainer; with overwrite, also its only user for now.
        UsageError naming the holder when another command has it."""
        try:
            os.makedirs(self.path, exist_ok=True)
            trainer = _open_lock(self.join(TRAINER_LOCK), readers_may_skip=False)
            users = _open_lock(self.join(USERS_LOCK), readers_may_skip=False)
        except OSError as error:
            raise UsageError(f"--out-dir {self.path} is not writable: {error.strerror}") from None
        self._locks += [trainer, users]
        if not _try_lock(trainer, fcntl.LOCK_EX):
            raise UsageError(f"--out-dir {self.path} is in use by {_holder(self.join(TRAINER_LOCK))}, "
                             f"which is training there; wait for it to end or choose another --out-dir")
        _stamp(trainer)
        if not _try_lock(users, fcntl.LOCK_EX if overwrite else fcntl.LOCK_SH):
            # Readers share this lock and stamp nothing on it (an explorer holds no other): say what can hold it.
            raise UsageError(f"--overwrite: another command (--sample, --morph, --export, --explore or evaluate.py) "
                             f"is reading --out-dir {self.path}; run it again when that has ended" if overwrite else
                             f"--out-dir {self.path} is being replaced by --overwrite; try again in a moment")

    def allow_readers(self):
        """After --overwrite has removed the old run: readers may come in again."""
        fcntl.flock(self._locks[1], fcntl.LOCK_SH)

    def lock_for_reading(self, output):
        """A reader beside any trainer: refused only while --overwrite replaces the run, or while
        another command writes the same `output` (samples, morph, evaluation; None: a reader
        that writes nothing, such as --explore)."""
        users = _open_lock(self.join(USERS_LOCK), readers_may_skip=True)
        if users is not None:
            self._locks.append(users)
            if not _try_lock(users, fcntl.LOCK_SH):
                raise UsageError(f"--out-dir {self.path} is being replaced by --overwrite "
                                 f"({_holder(self.join(TRAINER_LOCK))}); try again when it has begun training")
        if output is None:
            return
        path = self.join(f".{output}.lock")
        own = _open_lock(path, readers_may_skip=True)
        if own is not None:
            self._locks.append(own)
            if not _try_lock(own, fcntl.LOCK_EX):
                raise UsageError(f"{_holder(path)} is writing the {output} outputs of {self.path}; "
                                 f"wait for it to end")
            if os.access(path, os.W_OK):
                _stamp(own)

    @contextlib.contextmanager
    def output_lock(self, output):
        """Held while the trainer writes an output that a reader may also write (the morphs)."""
        descriptor = _open_lock(self.join(f".{output}.lock"), readers_may_skip=False)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # a reader's write is short: wait for it
            yield
        finally:
            os.close(descriptor)

    # -- the manifest
    def manifest(self):
        """{"files": [...], "folders": [...]}: what the program wrote here (relative paths)."""
        path = self.join(MANIFEST_FILE)
        if not os.path.exists(path):
            return {"files": [], "folders": []}
        values = read_json(path, "")
        if (not isinstance(values, dict) or not all(
                isinstance(values.get(key), list) and all(isinstance(v, str) for v in values[key])
                for key in ("files", "folders"))):
            raise UsageError(f"{path} is damaged, so which files here are the program's is unknown; "
                             f"move the folder's files away by hand or choose another --out-dir")
        return values

    @contextlib.contextmanager
    def _manifest_update(self):
        descriptor = _open_lock(self.join(MANIFEST_LOCK), readers_may_skip=False)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            manifest = self.manifest()
            yield manifest
            manifest = {key: sorted(set(manifest[key])) for key in ("files", "folders")}
            outputs.write_json(self.join(MANIFEST_FILE), {**manifest, "written_by": "main1.py"})
        finally:
            os.close(descriptor)

    def claim(self, *names, folders=(), create=True):
        """Record files (and folders this program creates, and with `create` makes now) before
        they are written -> absolute path of the first name."""
        folders = [f for f in folders if not os.path.isdir(self.join(f))]  # only folders it creates
        manifest = self.manifest()
        if not set(names) <= set(manifest["files"]) or folders:
            with self._manifest_update() as manifest:
                manifest["files"] += names
                manifest["folders"] += folders
        for folder in folders if create else ():
            os.makedirs(self.join(folder), exist_ok=True)
        return self.join(names[0]) if names else None

    def output(self, name):
        """The absolute path of output `name`, recorded in the manifest."""
        return self.claim(name)

    def owns(self, name):
        return name in self.manifest()["files"]

    def remove_own_files(self):
        """--overwrite: delete exactly the files the manifest lists, then the folders it lists
        that are empty after that; the manifest is then empty. Returns the count deleted."""
        removed = 0
        with self._manifest_update() as manifest:
            for name in manifest["files"]:
                path = self.join(name)
                if os.path.isfile(path) or os.path.islink(path):
                    os.remove(path)
                    removed += 1
            for name in sorted(manifest["folders"], key=len, reverse=True):  # the deepest first
                with contextlib.suppress(OSError):  # not empty: it holds files that are not ours
                    os.rmdir(self.join(name))
            manifest["files"], manifest["folders"] = [], []
        return removed

    def holds_run(self):
        """A config.json and a complete checkpoint: a run that --resume can continue."""
        return os.path.exists(self.join(CONFIG_FILE)) and latest_checkpoint(self.path) is not None

    def claim_for(self, config):
        """Make this folder the run's: --overwrite removes the files the program wrote here; a new run
        refuses a folder holding a run, or files it would write that the program did not write."""
        if config.overwrite:
            removed = self.remove_own_files()
            print(f"--overwrite: removed the {removed} files the run in {self.path} had written")
        elif self.holds_run():
            raise UsageError(f"--out-dir {self.path} already holds a run; pass --resume to continue it "
                             f"or --overwrite to replace it")
        foreign = sorted(self.foreign_files(run_output_names(config)))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UsageError(f"--out-dir {self.path} holds files the run would write that this program did "
                             f"not write ({shown}); move them away or choose another --out-dir")

    def foreign_files(self, names):
        """Those of `names` that exist here and were not written by this program."""
        own = set(self.manifest()["files"])
        return [name for name in names if os.path.lexists(self.join(name)) and name not in own]


def run_output_names(config):
    """Every file a run of `config` writes in its folder (with a full run's iteration)."""
    step = config.steps
    names = [CONFIG_FILE, "losses.csv", "loss.png", "timing.json", f"progress_step{step:06d}.png",
             f"progress_step{step:06d}.gif", f"samples_step{step:06d}.png",
             os.path.join(CHECKPOINT_DIR, "checkpoint")]
    names += [f"morph_{schedule}_step{step:06d}.gif" for schedule in ("fast-slow", "equal")]
    if config.eval_every:
        names += ["metrics.csv", "metrics.png", BEST_FILE]
    if config.conditional:
        names.append(f"classes_step{step:06d}.png")
    saved = sorted({*range(config.checkpoint_every, step + 1, config.checkpoint_every), step})
    for saved_step in saved:
        names += checkpoint_files(f"{CHECKPOINT_PREFIX}-{saved_step}")
    return names


def tensorboard_suffix():
    """A suffix for this process's TensorBoard event file: its name is then the program's own."""
    return f".main1-{uuid.uuid4().hex[:12]}"


def write_config(folder, config):
    outputs.write_json(folder.output(CONFIG_FILE), config.to_json())


# ----------------------------------------------------------------------------- training state
class History:
    """Loss rows, progress snapshots and the running loss sums of the current interval."""

    def __init__(self):
        self.loss_rows = []        # (iteration, mean D loss, mean G loss) per interval
        self.snapshot_steps = []   # iteration of each progress snapshot
        self.snapshots = []        # uint8 [FIXED_NOISE_COUNT, H, W, C] per snapshot
        self.interval_sums = [0.0, 0.0, 0]  # D sum, G sum, iterations since the last row
        self.metric_rows = []      # one dict per evaluation and generator (metrics.csv's rows)
        self.train_seconds = 0.0   # wall time spent in training iterations, over every session
        self.best = None           # {"step", "frechet_distance", "generator"} of the best evaluation
        self.above_best = 0        # evaluations in a row far above the best (training.judge_evaluation)

    def add_train_seconds(self, seconds):
        self.train_seconds += seconds

    def add_losses(self, d_loss, g_loss):
        self.interval_sums = [self.interval_sums[0] + d_loss, self.interval_sums[1] + g_loss,
                              self.interval_sums[2] + 1]

    def close_interval(self, step):
        d_sum, g_sum, count = self.interval_sums
        if count:
            self.loss_rows.append((step, d_sum / count, g_sum / count))
        self.interval_sums = [0.0, 0.0, 0]

    def save(self, prefix):
        outputs.write_atomic(prefix + ".snapshots.npy", outputs.npy_bytes(
            np.asarray(self.snapshots, dtype=np.uint8)))
        outputs.write_json(prefix + ".history.json", {
            "loss_rows": self.loss_rows, "snapshot_steps": self.snapshot_steps,
            "interval_sums": self.interval_sums, "metric_rows": self.metric_rows,
            "train_seconds": self.train_seconds, "best": self.best, "above_best": self.above_best})

    FILES = (".history.json", ".snapshots.npy")  # beside each checkpoint, named by its prefix

    @classmethod
    def prune(cls, checkpoint_prefix, kept):
        """Delete the history files of every checkpoint of `checkpoint_prefix` not in `kept`
        (the prefixes the Saver still keeps): history and weights leave together."""
        kept = {os.path.basename(prefix) for prefix in kept}
        for path in glob.glob(f"{checkpoint_prefix}-*{cls.FILES[0]}"):
            prefix = path[:-len(cls.FILES[0])]
            if os.path.basename(prefix) not in kept:
                for suffix in cls.FILES:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(prefix + suffix)

    @classmethod
    def load(cls, prefix):
        history = cls()
        with open(prefix + ".history.json") as stream:
            saved = json.load(stream)
        history.loss_rows = [tuple(row) for row in saved["loss_rows"]]
        history.snapshot_steps = saved["snapshot_steps"]
        history.interval_sums = saved["interval_sums"]
        history.metric_rows = saved["metric_rows"]
        history.train_seconds = saved.get("train_seconds", 0.0)
        history.best, history.above_best = saved.get("best"), saved.get("above_best", 0)
        history.snapshots = list(np.load(prefix + ".snapshots.npy", allow_pickle=False))
        return history


def resumed_config(flags, typed):
    """For --resume: the run's config.json, with the settings that may change taken from the
    flags typed now; a typed setting that defines the run must equal the run's."""
    saved = read_config(flags.out_dir, f"--resume: no run to continue in {flags.out_dir} "
                                            f"(no {CONFIG_FILE})")
    checkpoint = latest_checkpoint(flags.out_dir)
    if not checkpoint:
        raise UsageError(f"--resume: no complete checkpoint in {os.path.join(flags.out_dir, CHECKPOINT_DIR)}: "
                         f"the run stopped before its first one; start it again without --resume")
    for name in RunConfig.names(DEFINES_RUN):
        if name in typed and getattr(flags, name) != getattr(saved, name):
            raise UsageError(f"--{name.replace('_', '-')} {typed[name]} differs from the resumed run's "
                             f"{getattr(saved, name)}; drop the flag or start a new --out-dir")
    changed = {name: getattr(flags, name) for name in RunConfig.names(MAY_CHANGE) if name in typed}
    config = saved.replace(**changed, **{name: getattr(flags, name) for name in RunConfig.names(INVOCATION)})
    step = checkpoint_step(checkpoint)
    if step >= config.steps:
        if not os.path.exists(os.path.join(config.out_dir, f"samples_step{step:06d}.png")):
            # It stopped after its last checkpoint and before its pictures: write them, train nothing.
            print(f"--resume: the run is at iteration {step}, its last; writing its missing final outputs")
            return config.replace(steps=step)
        raise UsageError(f"--resume: the run in {config.out_dir} is already at iteration {step}; "
                         f"pass a larger --steps to continue it")
    return config
