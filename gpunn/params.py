"""The parameter store: one flat buffer for all parameters and one for all gradients.

Layers own ``params`` and ``grads`` dicts and know nothing of this: the store walks the
model's layer tree, copies their arrays into two flat buffers and gives each layer views
into them, so the optimiser updates
the whole model in one pass (one fused kernel on a GPU) and snapshots are one copy. Each
view starts at a multiple of :data:`ALIGN` elements (aligned pointers for cuBLAS and vector
loads); the gaps between views hold zeros and stay zero (their gradient is zero). A layer
that rebinds ``grads[key]`` (or a user who replaces ``params[key]``) is adopted at the next
step. Only backends whose slices are guaranteed views (NumPy, CuPy) get flat buffers;
elsewhere the separate arrays are used as they are.
"""

from __future__ import annotations

import numpy as np

from .backend.ops import host_array

#: Parameter views in the flat buffers start at multiples of this many elements (256 bytes
#: in float32).
ALIGN = 64


class ParameterStore:
    """The parameters and gradients of a built layer tree, on one backend; its buffers
    (non-trainable state) join snapshots.

    Parameters
    ----------
    root : Layer
        The model (or any layer): every parameter in its tree, by path.
    backend : Backend
    """

    def __init__(self, root, backend):
        self.root, self.backend = root, backend
        self.flat = None  # (P, G) when flat
        self._entries, self._pviews, self._gviews = [], [], []
        self.build()

    def build(self, backend=None) -> None:
        """(Re)build the flat buffers from the layers' current arrays (after a device move
        or a replaced parameter)."""
        self.backend = backend = backend or self.backend
        self.flat = None
        self._entries = [(layer, key) for _, layer, key in self.root.named_parameters()]
        _check_shapes(self.root)
        if not backend.supports_views or not self._entries:
            return
        shapes = [tuple(layer.params[key].shape) for layer, key in self._entries]
        total = flat_layout(shapes)[1]
        with backend.context():
            P, G = backend.zeros((total,)), backend.zeros((total,))
            self._pviews, self._gviews = _views(backend.xp, P, shapes), _views(backend.xp, G,
                                                                                 shapes)
            for (layer, key), pv, gv in zip(self._entries, self._pviews, self._gviews):
                pv[...] = layer.params[key]
                gv[...] = layer.grads[key]
                layer.params[key], layer.grads[key] = pv, gv
        self.flat = (P, G)

    def parameters(self) -> list:
        """Every parameter array, in the tree's order (``W`` before ``b``)."""
        return [layer.params[key] for _, layer, key in self.root.named_parameters()]

    def gradients(self) -> list:
        """Gradients from the last backward, in the order of :meth:`parameters`."""
        return [layer.grads[key] for _, layer, key in self.root.named_parameters()]

    def buffers(self) -> list:
        """Every buffer array (non-trainable state), in the tree's order."""
        return [layer.buffers[key] for _, layer, key in self.root.named_buffers()]

    def step_lists(self, adopt_params: bool = True) -> tuple[list, list]:
        """What the optimiser steps on: ``([P], [G])`` when flat, else the separate arrays.

        Adopts what layers or users rebound since the last step: a new gradient array is
        copied into its view; a replaced parameter rebuilds the buffers (checked unless
        ``adopt_params`` is False: the training loop checks that once per epoch).
        """
        if self.flat is None:
            params = [layer.params[key] for layer, key in self._entries]
            grads = [layer.grads[key] for layer, key in self._entries]
            for (layer, key), p, g in zip(self._entries, params, grads):
                if tuple(g.shape) != tuple(p.shape):
                    _bad_gradient(layer, key, g, p)
            return params, grads
        if adopt_params:
            self.adopt_params()
        for (layer, key), gv in zip(self._entries, self._gviews):
            grad = layer.grads[key]
            if grad is not gv:
                if tuple(grad.shape) != tuple(gv.shape):  # it would broadcast, silently
                    _bad_gradient(layer, key, grad, gv)
                gv[...] = grad
                layer.grads[key] = gv
        P, G = self.flat
        return [P], [G]

    def adopt_params(self) -> None:
        """Rebuild the buffers if a parameter array was replaced since they were built."""
        if self.flat is not None and any(
                layer.params[key] is not pv
                for (layer, key), pv in zip(self._entries, self._pviews)):
            self.build()

    def count(self) -> int:
        """Number of parameter values."""
        return sum(int(np.prod(tuple(p.shape))) for p in self.parameters())

    def snapshot(self, on_device: bool = False) -> list:
        """Copies of every parameter and buffer, on the host or (``on_device``) on the
        backend's device (see :meth:`restore`)."""
        arrays = self.parameters() + self.buffers()
        if on_device:
            xp = self.backend.xp
            with self.backend.context():
                return [xp.asarray(p, copy=True) for p in arrays]
        return [np.array(host_array(p)) for p in arrays]

    def restore(self, saved: list) -> None:
        """Put back what :meth:`snapshot` returned (in place: views stay valid)."""
        be = self.backend
        with be.context():
            for p, value in zip(self.parameters() + self.buffers(), saved):
                p[...] = be.asarray(value, dtype=p.dtype)


def _bad_gradient(layer, key, grad, param):
    raise ValueError(f"{layer.label}: backward set grads[{key!r}] of shape "
                     f"{tuple(grad.shape)}; expected the parameter's shape "
                     f"{tuple(param.shape)}")


def _check_shapes(root) -> None:
    """A parameter replaced by an array of another shape is refused, naming it."""
    for _, layer in root.walk():
        for key, shape in layer.param_shapes().items():
            value = layer.params.get(key)
            given = tuple(getattr(value, "shape", ()))
            if value is not None and given != tuple(shape):
                raise ValueError(f"{layer.label}: parameter {key!r} must have shape "
                                 f"{tuple(shape)}, got an array of shape {given}")


def flat_layout(shapes) -> tuple[list[int], int]:
    """Offsets of arrays of ``shapes`` in a flat buffer, each a multiple of :data:`ALIGN`,
    and the buffer's length."""
    offsets, end = [], 0
    for shape in shapes:
        offsets.append(end)
        end += int(np.prod(shape))
        end = -(-end // ALIGN) * ALIGN
    return offsets, end


def _views(xp, flat, shapes) -> list:
    """Views of the 1-D ``flat`` with the given shapes, at :func:`flat_layout`'s offsets."""
    offsets, _ = flat_layout(shapes)
    return [xp.reshape(flat[o:o + int(np.prod(shape))], shape)
            for o, shape in zip(offsets, shapes)]
