import numpy as np
import pytest

import latent


@pytest.mark.parametrize("schedule", sorted(latent.MORPH_SCHEDULES))
def test_every_morph_frame_lies_on_the_same_sphere(schedule):
    z = latent.sphere_path(np.random.default_rng(0), 64, 32, schedule)
    assert z.shape == (32, 64) and z.dtype == np.float32
    norms = np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(norms, latent.typical_noise_norm(64), rtol=1e-5)


def test_typical_norm_matches_uniform_noise():
    z = latent.uniform_noise(np.random.default_rng(1), 20000, 64)
    assert z.min() >= -1 and z.max() <= 1
    assert np.sqrt((z ** 2).sum(axis=1).mean()) == pytest.approx(latent.typical_noise_norm(64), rel=0.01)


@pytest.mark.parametrize("schedule", sorted(latent.MORPH_SCHEDULES))
def test_the_loop_closes_smoothly(schedule):
    z = latent.sphere_path(np.random.default_rng(2), 16, 32, schedule)
    steps = np.linalg.norm(np.diff(np.concatenate([z, z[:1]]), axis=0), axis=1)
    # The step from the last frame back to the first is like its neighbours: a repeated end
    # frame (a stutter) would make it 0, a missing one about twice as long.
    wrap, neighbours = steps[-1], (steps[-2] + steps[0]) / 2
    assert 0.8 < wrap / neighbours < 1.25
    # The same loop at twice the frames: every other frame is this path's frame; the frame
    # after the last falls halfway back to the first.
    finer = latent.sphere_path(np.random.default_rng(2), 16, 64, schedule)
    np.testing.assert_allclose(finer[::2], z, atol=1e-5)
    halfway = np.linalg.norm(finer[-1] - z[-1]), np.linalg.norm(finer[-1] - z[0])
    assert halfway[0] == pytest.approx(halfway[1], rel=0.1)


def test_schedules_turn_at_their_stated_speeds():
    rng = np.random.default_rng(3)
    fast_slow = latent.sphere_path(rng, 8, 32, "fast-slow")
    # With t1 = 2 theta, frame 8 (theta = pi/2) has t1 = pi: z = -r e0; frame 16 has t1 = 2 pi: z = r e0.
    np.testing.assert_allclose(fast_slow[16], fast_slow[0], atol=1e-5)
    np.testing.assert_allclose(fast_slow[8], -fast_slow[0], atol=1e-5)
    equal = latent.sphere_path(np.random.default_rng(3), 8, 32, "equal")
    np.testing.assert_allclose(equal[16], -equal[0], atol=1e-5)


def test_sphere_paths_are_frame_major_and_independent():
    paths = latent.sphere_paths(np.random.default_rng(4), 10, 5, 32)
    assert paths.shape == (32, 5, 10)
    assert not np.allclose(paths[:, 0], paths[:, 1])


def test_sphere_needs_three_dimensions():
    with pytest.raises(ValueError, match="z_dim >= 3"):
        latent.sphere_path(np.random.default_rng(0), 2)
