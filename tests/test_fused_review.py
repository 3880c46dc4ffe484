"""Review of the fused CUDA step and the aligned flat buffers: regressions found."""

from __future__ import annotations

import numpy as np

import gpunn as gn
from gpunn.params import flat_layout


def test_a_flat_optimizer_state_without_alignment_gaps_resumes(tmp_path):
    """A model file whose flat optimiser state has no alignment gaps (written before the
    flat buffers aligned their views) loads, so it must also train on: it trains exactly
    as the same file with the gaps does (fit refused it: 'the parameter list changed')."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = gn.Sequential([gn.Dense(5, 7, activation="relu"),
                           gn.Dense(7, 3, activation="softmax")], device="cpu", seed=0)
    kwargs = dict(loss="cross_entropy", epochs=1, verbose=0, shuffle=False)
    model.fit(X, y, **kwargs)
    model.save(tmp_path / "aligned.npz")
    shapes = [tuple(p.shape) for p in model.parameters()]
    offsets, _ = flat_layout(shapes)
    state = model.optimizer.state[0]
    for key, value in state.items():
        value = gn.to_numpy(value)
        state[key] = np.concatenate([value[o:o + int(np.prod(s))]
                                     for o, s in zip(offsets, shapes)])
    model.save(tmp_path / "unaligned.npz")
    results = []
    for name in ("aligned", "unaligned"):
        loaded = gn.load(tmp_path / f"{name}.npz", device="cpu")
        loaded.fit(X, y, optimizer=loaded.optimizer, **kwargs)
        results.append([gn.to_numpy(p) for p in loaded.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(b, a)


def test_16_bit_logits_meet_float32_soft_targets_unrounded():
    """The cross-entropies score 16-bit logits in float32 with the targets as given: a soft
    target of 0.1 is not first rounded to float16 (0.0999755859375)."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 3)).astype(np.float16)
    soft = np.full((6, 3), 0.1, np.float32)
    soft[:, 0] = 0.8
    for loss in (gn.losses.get("bce"), gn.losses.get("cross_entropy")):
        want = float(loss.forward_logits(z.astype(np.float32), soft))
        assert float(loss.forward_logits(z, soft)) == want, loss.name
