"""Random streams of a run: training batches and noise as pure functions of (seed, iteration),
and paths over a sphere in noise space for the morphing GIFs."""
import numpy as np

# Independent random streams derived from a run's seed: np.random.default_rng([seed, STREAM, ...]).
NOISE_STREAM, ORDER_STREAM, FIXED_STREAM, SAMPLE_STREAM, MORPH_STREAM, EVAL_STREAM, BN_STREAM, EXPORT_STREAM = range(8)


def uniform_noise(rng, n, z_dim):
    """n noise vectors drawn uniform in [-1, 1] -> float32 [n, z_dim]."""
    return rng.uniform(-1.0, 1.0, size=(n, z_dim)).astype(np.float32)


def balanced_labels(n, num_classes):
    """Classes 0, 1, ..., K-1, 0, 1, ... for n images, int64 (zeros for an unconditional model)."""
    return np.arange(n, dtype=np.int64) % num_classes if num_classes else np.zeros(n, np.int64)


class TrainingFeed:
    """What each training iteration is fed: a mini-batch of real images (with their labels) and
    the generator's noise, as pure functions of (seed, iteration).

    The data order is a fresh permutation per pass over the data and the noise a fresh draw
    per iteration, each from its own seeded stream: a resumed run needs only the iteration
    number to continue exactly where the interrupted one stopped.
    """

    def __init__(self, images, batch_size, z_dim, seed, labels=None):
        self.images, self.batch_size, self.z_dim, self.seed = images, batch_size, z_dim, seed
        self.labels = labels  # int [n], for a conditional model; None otherwise
        self._order_cache = {}

    def _order(self, epoch):
        if epoch not in self._order_cache:
            self._order_cache = {epoch: np.random.default_rng([self.seed, ORDER_STREAM, epoch])
                                 .permutation(len(self.images))}
        return self._order_cache[epoch]

    def _indices(self, iteration):
        n = len(self.images)
        positions = np.arange(iteration * self.batch_size, (iteration + 1) * self.batch_size)
        return [self._order(p // n)[p % n] for p in positions]

    def batch(self, iteration):
        """Images for 0-based `iteration` -> [batch_size, H, W, C]."""
        return self.images[self._indices(iteration)]

    def batch_labels(self, iteration):
        """The classes of batch(iteration)'s images -> int32 [batch_size]."""
        return self.labels[self._indices(iteration)].astype(np.int32)

    def noise(self, iteration):
        rng = np.random.default_rng([self.seed, NOISE_STREAM, iteration])
        return uniform_noise(rng, self.batch_size, self.z_dim)


def typical_noise_norm(z_dim):
    """Root-mean-square norm of a uniform [-1, 1] noise vector: E|z|^2 = z_dim / 3."""
    return float(np.sqrt(z_dim / 3.0))


# Angle schedules of the morphing GIFs, as multiples of one turn theta in [0, 2 pi):
# (t1, t2) = (2 theta, theta): one angle turns twice as fast as the other; (theta, theta): equal.
MORPH_SCHEDULES = {"fast-slow": (2, 1), "equal": (1, 1)}


def sphere_path(rng, z_dim, n_frames=32, schedule="fast-slow"):
    """Noise vectors for a closed loop over a sphere -> float32 [n_frames, z_dim].

    z = r (cos t1 e0 + sin t1 (cos t2 e1 + sin t2 e2)), with e0, e1, e2 orthonormal, so every
    frame has norm r, the typical norm of a training noise vector. The angles advance by whole
    turns over the loop, so the frame after the last one would be the first again.
    """
    if z_dim < 3:
        raise ValueError(f"a sphere path needs z_dim >= 3, got {z_dim}")
    speed1, speed2 = MORPH_SCHEDULES[schedule]
    # QR of three random columns gives an orthonormal basis of their span.
    basis, _ = np.linalg.qr(rng.uniform(-1.0, 1.0, size=(z_dim, 3)))
    e0, e1, e2 = basis.T
    theta = 2.0 * np.pi * np.arange(n_frames) / n_frames
    t1, t2 = speed1 * theta, speed2 * theta
    z = (np.cos(t1)[:, None] * e0
         + np.sin(t1)[:, None] * (np.cos(t2)[:, None] * e1 + np.sin(t2)[:, None] * e2))
    return (typical_noise_norm(z_dim) * z).astype(np.float32)


def sphere_paths(rng, z_dim, n_paths, n_frames=32, schedule="fast-slow"):
    """n_paths independent loops -> float32 [n_frames, n_paths, z_dim] (frame-major)."""
    paths = [sphere_path(rng, z_dim, n_frames, schedule) for _ in range(n_paths)]
    return np.stack(paths, axis=1)
