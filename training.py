"""One training run in memory: its graph and session, the train step, progress snapshots,
scores, checkpoints and outputs; and the clock and signal handling around the loop in main1.py."""
import contextlib
import glob
import os
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

import evaluate
import latent
import outputs
import runs
import sampling
from config import CLASS_NAMES, GENERATORS

COLLAPSE_SHARE = 0.25        # a distance this share above the best ...
COLLAPSE_EVALUATIONS = 2     # ... for this many evaluations in a row: a sign of collapse
RARE_CLASS_SHARE = 0.5       # a class drawn under half as often as uniform: a sign of collapse


def judge_evaluation(history, step, metrics, generator):
    """Update the run's best evaluation and its collapse watch with `metrics` (those of the run's
    generator at `step`) -> (whether this is the new best, [one line per sign of collapse])."""
    distance = metrics["frechet_distance"]
    best = history.best
    if best is None or distance < best["frechet_distance"]:
        history.best = {"step": step, "frechet_distance": distance, "generator": generator}
        history.above_best = 0
        is_best = True
    else:
        is_best = False
        far_above = distance > (1 + COLLAPSE_SHARE) * best["frechet_distance"]
        history.above_best = history.above_best + 1 if far_above else 0
    signs = []
    best = history.best
    if history.above_best >= COLLAPSE_EVALUATIONS:
        signs.append(f"iteration {step}: the Frechet distance ({distance:.1f}) has stayed more than "
                     f"{COLLAPSE_SHARE:.0%} above the best ({best['frechet_distance']:.1f}, iteration {best['step']}) "
                     f"for {history.above_best} evaluations in a row")
    shares = metrics["class_shares"]
    uniform = 1.0 / len(shares)
    rare = [k for k, share in enumerate(shares) if share < RARE_CLASS_SHARE * uniform]
    if rare:
        which = f"class {rare[0]} makes" if len(rare) == 1 else f"classes {', '.join(map(str, rare))} each make"
        signs.append(f"iteration {step}: {which} up under "
                     f"{RARE_CLASS_SHARE * uniform:.1%} of the samples (uniform: {uniform:.1%}; smallest "
                     f"{min(shares):.1%})")
    return is_best, signs


FIXED_NOISE_COUNT = 32          # the 4x8 grid of the progress GIF; its first columns in progress.png
PROGRESS_GRID = (4, 8)
PROGRESS_COLUMNS = 10


def configure_tensorflow():
    """Process-wide TensorFlow settings of a training run, set once before the graph is built."""
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast

    tf.get_logger().setLevel("ERROR")  # no deprecation notices in the middle of the progress bar
    # Eager execution stays on for the process: every graph here is built inside its own
    # tf.Graph().as_default() and run by a Session, which TF2's eager default never reaches (the
    # images are bit for bit those of a process with eager execution disabled), and the same
    # process can then also write a SavedModel.
    tf.config.experimental.enable_op_determinism()  # same seed, same machine: same run


class Trainer:
    """Owns the graph, the session and the outputs of one run."""

    def __init__(self, config, folder, dataset, evaluator=None):
        """config: the run's RunConfig (its image shape, classes and data recorded); folder: its
        runs.RunFolder, locked for training."""
        # TensorFlow is imported here, not at the top: main1.py's flag checks stay fast.
        import tensorflow as tf

        from model import DeepConvolutionalGAN

        self.tf, self.config, self.folder = tf, config, folder
        self.conditional = config.conditional
        self.class_names = CLASS_NAMES.get(dataset.name)
        self.training_feed = latent.TrainingFeed(dataset.images, config.batch_size, config.z_dim, config.seed,
                                                  dataset.labels if config.conditional else None)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(config.seed)
            self.gan = DeepConvolutionalGAN(config.model_config())
            init = tf.compat.v1.global_variables_initializer()
        self.graph.finalize()  # the loop below must never add ops
        self.session = tf.compat.v1.Session(graph=self.graph, config=runs.session_config(config.bf16, self.gan.config))
        self.sampler = sampling.Sampler(self.gan, self.session, config.generator, config.seed)
        self.fixed_noise = latent.uniform_noise(
            np.random.default_rng([config.seed, latent.FIXED_STREAM]), FIXED_NOISE_COUNT, config.z_dim)
        # A conditional model's progress pictures also hold their classes fixed: each row of the
        # 4x8 grid one class (0, 1, 2, 3).
        self.fixed_labels = (np.arange(FIXED_NOISE_COUNT) // PROGRESS_GRID[1] % self.gan.num_classes
                             if self.gan.num_classes else None)
        self.evaluator = evaluator
        self.checkpoint_prefix = folder.join(runs.CHECKPOINT_DIR, runs.CHECKPOINT_PREFIX)
        self.saved_step = None
        self.stop_reason = None  # the sign of collapse that ended the run (--stop-on-collapse)
        self.summary_writer = None
        try:
            if config.resume:
                self._restore()
            else:
                self.session.run(init)
                self.history = runs.History()
            self.summary_writer = self._summary_writer(graph=None if config.resume else self.graph)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def close(self):
        """Let go of the event file and the session, so that a caller that goes on in the same
        process (a notebook, the tests) holds no file of the run open, even after an error."""
        try:
            if self.summary_writer is not None:
                with runs.signals_deferred():  # its worker thread must see the end of the queue
                    self.summary_writer.close()
        finally:
            self.session.close()

    def _summary_writer(self, graph):
        """TensorBoard's writer; its event file carries this process's own suffix, recorded in
        the manifest, so that --overwrite deletes it and nothing else in tensorboard/."""
        tf, suffix = self.tf, runs.tensorboard_suffix()
        self.folder.claim(folders=["tensorboard"])
        with self.graph.as_default():
            writer = tf.compat.v1.summary.FileWriter(self.folder.join("tensorboard"), graph=graph,
                                                     filename_suffix=suffix)
        writer.flush()
        for path in glob.glob(self.folder.join("tensorboard", f"events.out.tfevents.*{suffix}")):
            self.folder.claim(os.path.relpath(path, self.folder.path))
        return writer

    def _restore(self):
        """Continue from the latest checkpoint; a damaged or foreign one is a clear error."""
        state = runs.checkpoint_state(self.config.out_dir)
        path = runs.latest_checkpoint(self.config.out_dir)
        runs.restore_checkpoint(self.gan, self.session, path)
        try:
            self.history = runs.History.load(path)
        except (OSError, ValueError, KeyError) as error:
            raise runs.UsageError(f"cannot restore the history of checkpoint {path}: {error}") from None
        self.saved_step = self.step
        # Let the Saver keep pruning the checkpoints written before this process started.
        self.gan.saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))

    @property
    def step(self):
        return int(self.session.run(self.gan.global_step))

    def train(self):
        """The whole run: the loop, then the outputs and where the time went -> exit code (1 when
        the weights broke: the last good checkpoint is kept, and the losses written)."""
        config, folder = self.config, self.folder
        runs.write_config(folder, config)  # after a resumed checkpoint proved restorable
        stopwatch = Stopwatch()
        try:
            step, exit_code = self.fit(stopwatch)
        except FloatingPointError as error:
            print(f"main1.py: training stopped: {error}; the last good checkpoint is kept in "
                  f"{folder.join(runs.CHECKPOINT_DIR)}", file=sys.stderr)
            # The weights may already be NaN: write the history, not pictures of broken weights.
            self.write_outputs(self.history.loss_rows[-1][0] if self.history.loss_rows else 0, with_samples=False)
            return 1
        with stopwatch("outputs"):
            self.write_outputs(step)
        report_time(stopwatch.report(), folder, config.resume)
        print(f"outputs of iteration {step} are in {config.out_dir}")
        if self.stop_reason:
            best = self.history.best
            kept = folder.join(runs.CHECKPOINT_DIR, f"{runs.BEST_PREFIX}-{best['step']}")
            print(f"stopped at iteration {step} (--stop-on-collapse): {self.stop_reason}; the best checkpoint, "
                  f"iteration {best['step']} (Frechet distance {best['frechet_distance']:.1f}), is {kept} "
                  f"(--checkpoint best)")
        return exit_code

    def fit(self, stopwatch):
        """The training loop, from the run's next iteration to config.steps: each iteration one
        batch through the ordered train op, then the snapshot, evaluation and checkpoint due at it
        -> (last iteration, exit code: 0, or 130/143 after a signal, checkpointed)."""
        config, start = self.config, self.step
        signals = SignalFlag()
        bar = tqdm(total=config.steps, initial=start, desc="train", unit="it", dynamic_ncols=True,
                   mininterval=1.0, file=sys.stderr)
        step, exit_code, clock = start, 0, time.perf_counter()
        try:
            for step in range(start + 1, config.steps + 1):
                with stopwatch("training", also=self.history.add_train_seconds):
                    d_loss, g_loss = self.train_step(step - 1)
                if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                    raise FloatingPointError(f"iteration {step}: loss is not finite (D {d_loss}, G {g_loss})")
                with runs.signals_deferred():  # a second Ctrl-C waits for the progress bar's lock
                    self.history.add_losses(d_loss, g_loss)
                    bar.update(1)
                if step % config.snapshot_every == 0 or step == config.steps:
                    with stopwatch("snapshots"), runs.signals_deferred():  # a few samples: short
                        self.snapshot(step)
                        rate = (step - start) * config.batch_size / (time.perf_counter() - clock)
                        bar.set_postfix_str(f"step {step} D {d_loss:.3f} G {g_loss:.3f} {rate:.0f} img/s")
                due = config.eval_every and (step % config.eval_every == 0 or step == config.steps)
                if due and self._evaluate_at(step, bar, stopwatch):  # --stop-on-collapse ended it here
                    break
                if step % config.checkpoint_every == 0 or step == config.steps:
                    with stopwatch("checkpoints"), runs.signals_deferred():
                        self.save_checkpoint(step)
                if signals.signum is not None:
                    exit_code = runs.SIGNAL_EXIT_CODES[signals.signum]
                    with runs.signals_deferred():
                        bar.write(f"{signal.Signals(signals.signum).name} received: stopping after iteration "
                                  f"{step}", file=sys.stderr)
                    break
        finally:
            with runs.signals_deferred():
                bar.close()
            signals.restore()
        if exit_code:
            with runs.signals_deferred():
                self.save_checkpoint(step)
        return step, exit_code

    def _evaluate_at(self, step, bar, stopwatch):
        """Score every generator at `step`, keep a new best checkpoint, say each sign of collapse
        -> whether the run stops here (--stop-on-collapse, checkpointed)."""
        with stopwatch("evaluation"):
            metrics, is_best, signs = self.score(step)
        with runs.signals_deferred():
            self._report_evaluation(step, bar, metrics, is_best, signs)
        if is_best:
            with stopwatch("checkpoints"), runs.signals_deferred():
                self.save_checkpoint(step)
                self.keep_best(step)
        if signs and self.config.stop_on_collapse:
            with runs.signals_deferred():
                self.save_checkpoint(step)
            self.stop_reason = signs[0]
            return True
        return False

    def _report_evaluation(self, step, bar, metrics, is_best, signs):
        bar.write(f"iteration {step}: Frechet distance {metrics['frechet_distance']:.3f} "
                  f"(real {self.evaluator.floor['frechet_distance']:.3f}), classifier score "
                  f"{metrics['classifier_score']:.3f}" + (" (best so far)" if is_best else ""), file=sys.stderr)
        for sign in signs:
            bar.write(f"{sign}: signs of collapse" + ("" if self.config.stop_on_collapse else
                                                      " (--stop-on-collapse ends a run here)"), file=sys.stderr)

    def train_step(self, iteration):
        gan = self.gan
        feed = {gan.real_images: self.training_feed.batch(iteration), gan.z: self.training_feed.noise(iteration)}
        if self.conditional:
            feed[gan.labels] = self.training_feed.batch_labels(iteration)
        _, d_loss, g_loss = self.session.run([gan.train_op, gan.d_loss, gan.g_step_loss], feed)
        return float(d_loss), float(g_loss)

    def snapshot(self, step):
        """Close the loss interval and take a progress snapshot at `step`."""
        self.history.close_interval(step)
        images = self.sampler(self.fixed_noise, labels=self.fixed_labels)
        self.history.snapshot_steps.append(step)
        self.history.snapshots.append(outputs.to_uint8(images))
        _, d_loss, g_loss = self.history.loss_rows[-1]
        tf = self.tf
        summary = tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="loss/discriminator", simple_value=d_loss),
            tf.compat.v1.Summary.Value(tag="loss/generator", simple_value=g_loss),
            tf.compat.v1.Summary.Value(tag="fixed_noise_samples", image=self._image_summary(images))])
        self.summary_writer.add_summary(summary, step)

    def score(self, step):
        """Evaluator metrics of every generator variant, appended to the metric history, and the
        run's generator judged against its best (judge_evaluation) -> (its metrics, whether they
        are the new best, [a line per sign of collapse])."""
        tf = self.tf
        values, rows = [], []
        for generator in GENERATORS:
            metrics = evaluate.score_generator(self.evaluator, self.sampler, generator)
            rows.append(outputs.metric_row(step, generator, self.history.train_seconds, metrics))
            for name in ("frechet_distance", "classifier_score"):
                values.append(tf.compat.v1.Summary.Value(tag=f"eval_{generator}/{name}",
                                                         simple_value=metrics[name]))
            if generator == self.config.generator:
                chosen = metrics
        is_best, signs = judge_evaluation(self.history, step, chosen, self.config.generator)
        for row in rows:  # which evaluation is the best so far, in every row of this one
            row["best_step"] = self.history.best["step"]
        self.history.metric_rows += rows
        with runs.signals_deferred():  # the event writer's queue and worker thread must not be cut into
            self.summary_writer.add_summary(tf.compat.v1.Summary(value=values), step)
        # Written now, not only at the end: a long run's scores can be read while it trains.
        outputs.write_metrics(self.folder.output("metrics.csv"), self.folder.output("metrics.png"),
                              self.history.metric_rows, self.evaluator.floor, self.history.best)
        return chosen, is_best, signs

    def keep_best(self, step):
        """Copy the checkpoint of `step` (saved) to checkpoints/best.ckpt-STEP, which the Saver's
        pruning never removes, name it in best.json, and delete the previous best copy."""
        folder, best = self.folder, self.history.best
        source = f"{self.checkpoint_prefix}-{step}"
        target = os.path.join(runs.CHECKPOINT_DIR, f"{runs.BEST_PREFIX}-{step}")
        previous = glob.glob(folder.join(runs.CHECKPOINT_DIR, f"{runs.BEST_PREFIX}-*.index"))
        try:
            for suffix in runs.SAVER_SUFFIXES:
                with open(source + suffix, "rb") as stream:
                    outputs.write_atomic(folder.output(target + suffix), stream.read())
            outputs.write_json(folder.output(runs.BEST_FILE), {**best, "checkpoint": target})
        except OSError as error:
            raise runs.CheckpointError(f"cannot keep the best checkpoint {folder.join(target)}: "
                                       f"{runs.error_summary(error)}") from None
        for index in previous:
            old = index[:-len(".index")]
            if old != folder.join(target):
                for suffix in runs.SAVER_SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(old + suffix)

    def _image_summary(self, images):
        grid = outputs.tile_grid(images, *PROGRESS_GRID)
        return self.tf.compat.v1.Summary.Image(
            height=grid.shape[0], width=grid.shape[1], colorspace=grid.shape[2],
            encoded_image_string=outputs.encode_png(grid))

    def save_checkpoint(self, step):
        """History files first, then the TF checkpoint, whose index update makes it current.

        A failed write (disk full, folder gone) raises CheckpointError; the files of the
        previous checkpoint are untouched, since the index still names it.
        """
        if step == self.saved_step:
            return
        prefix = f"{self.checkpoint_prefix}-{step}"
        try:
            self.folder.claim(*runs.checkpoint_files(prefix), os.path.join(runs.CHECKPOINT_DIR, "checkpoint"),
                              folders=[runs.CHECKPOINT_DIR])
            temporary, parts = runs.checkpoint_temporary(prefix)  # left behind only by a killed save
            self.folder.claim(*parts, folders=[temporary], create=False)
            self.history.save(prefix)
            runs.save_checkpoint(self.gan, self.session, self.checkpoint_prefix, step)
        except (OSError, self.tf.errors.OpError) as error:
            raise runs.CheckpointError(f"cannot write checkpoint {prefix}: {runs.error_summary(error)}") from None
        self.saved_step = step
        runs.History.prune(self.checkpoint_prefix, kept=self.gan.saver.last_checkpoints)

    def write_outputs(self, step, with_samples=True):
        folder = self.folder
        rows = self.history.loss_rows
        outputs.write_csv(folder.output("losses.csv"), ("step", "d_loss", "g_loss"),
                          [(s, f"{d:.6f}", f"{g:.6f}") for s, d, g in rows])
        if rows:
            steps, d_losses, g_losses = zip(*rows, strict=True)
            outputs.write_loss_plot(folder.output("loss.png"), steps, d_losses, g_losses)
        if self.history.snapshots:
            self._write_progress(step)
        if self.history.metric_rows and self.evaluator is not None:  # resumed without --eval-every: kept as is
            outputs.write_metrics(folder.output("metrics.csv"), folder.output("metrics.png"),
                                  self.history.metric_rows, self.evaluator.floor, self.history.best)
        if with_samples:
            sampling.write_sample_grid(self.sampler, folder, step)
            with folder.output_lock("morph"):  # a --morph beside this run may write the same GIFs
                sampling.write_morphs(self.sampler, folder, step)
            if self.conditional:
                sampling.write_class_grid(self.sampler, folder, step, self.class_names)
        with runs.signals_deferred():
            self.summary_writer.flush()

    def _write_progress(self, step):
        snapshots = np.asarray(self.history.snapshots, dtype=np.float32) / 255.0
        picture, rows = outputs.progress_picture(snapshots, PROGRESS_COLUMNS)
        outputs.write_progress_plot(self.folder.output(f"progress_step{step:06d}.png"),
                                    picture, [self.history.snapshot_steps[r] for r in rows])
        frames = [outputs.tile_grid(s, *PROGRESS_GRID) for s in snapshots]
        outputs.write_gif(self.folder.output(f"progress_step{step:06d}.gif"), frames)


def report_time(seconds, folder, resumed):
    """Print where this process's wall time went, and keep the run's in timing.json: a resumed
    run adds its seconds to those of the processes before it, and the record names the machine."""
    total = seconds["total"]
    parts = ", ".join(f"{name} {value:.1f} s ({100 * value / total:.1f}%)"
                      for name, value in seconds.items() if name != "total")
    print(f"wall time {total:.1f} s: {parts}")
    outputs.write_json(folder.output("timing.json"),
                       runs.timing_record(seconds, folder.join("timing.json") if resumed else None))


class Stopwatch:
    """Wall time spent per kind of work: `with stopwatch("checkpoints"): ...`."""

    def __init__(self):
        self.seconds = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name, also=None):
        """Time the block under `name`; `also(seconds)` is told its duration too."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            if also is not None:
                also(elapsed)

    def report(self):
        """{name: seconds} with 'total' and 'other' (the loop itself, the progress bar)."""
        total = time.perf_counter() - self.started
        return {**self.seconds, "other": total - sum(self.seconds.values()), "total": total}


class SignalFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between iterations."""

    def __init__(self):
        self.signum = None
        self._previous = {s: signal.signal(s, self._handle) for s in runs.SIGNAL_EXIT_CODES}

    def _handle(self, signum, _frame):
        if self.signum is not None:  # a second Ctrl-C: the user really wants out now
            raise runs.Interrupted(signum)
        self.signum = signum

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
