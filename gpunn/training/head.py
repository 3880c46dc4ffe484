"""Where a model's output meets its loss in a training step: the *head*, decided once per
``fit`` (:func:`head_for`), never per step.

Three implementations of one interface, ``forward(x, t, w, slots) -> LossResult`` (model
forward, then the loss, its value including the layers' penalties) and ``backward(grad)``
(the model's backward from the gradient that ``forward`` returned):

- :class:`OutputHead`: the loss takes the model's output (any loss, any output layer);
- :class:`LogitsHead`: the output layer is a Dense whose activation the loss applies
  itself (softmax + cross-entropy, sigmoid + binary cross-entropy): the model stops before
  it and the gradient is ``dL/dz`` (``p - y``: faster, and stable where ``log(softmax)``
  would underflow);
- :class:`FusedHead`: as the logits head, with the output layer's bias, the activation,
  the loss, ``dL/dz``, the bias gradient, the step's loss and (where asked) its metric
  written by one backend kernel (CUDA) into the epoch's buffers.
"""

from __future__ import annotations

from .. import metrics as _metrics
from ..layers import Dense, Layer
from ..losses import LossResult


class OutputHead:
    """The loss on the model's output.

    Parameters
    ----------
    model : Sequential
    loss : Loss
    """

    #: Index (in the fit's metrics) of the metric the head writes into its slot, or None.
    metric_at = None
    #: The head writes the step's loss into the epoch buffer's slot itself.
    writes_loss = False

    def __init__(self, model, loss):
        self.model, self.loss, self.backend = model, loss, model.backend
        self._checked = False  # the loss's gradient shape, at the first step
        # The layers that add a penalty (a Dense with kernel_l2), found once per fit: a
        # walk per step costs on small models.
        self._penalized = [layer for _, layer in model.walk()
                           if type(layer).penalty is not Layer.penalty
                           and layer.penalty() is not None]

    def forward(self, x, t, w=None, slots=None) -> LossResult:
        """Forward pass and loss of a batch ``x (batch, *input_shape)`` against ``t``,
        rows weighted by ``w (batch,)`` or None. ``slots`` (the epoch buffers' entries of
        this step) are for heads that write into them."""
        out = self.model.forward_batch(x, training=True)
        result = self.loss.compute(out, t, self.backend, w)
        if not self._checked:
            self._check(result, out)
        return self._with_penalty(result) if self._penalized else result

    def backward(self, grad) -> None:
        """Backpropagate ``grad`` (what :meth:`forward` returned, perhaps scaled) through
        the model; the first layer skips its input gradient."""
        self.model.backward_batch(grad, need_input_grad=False)

    def _check(self, result: LossResult, out) -> None:
        """A loss's gradient has its prediction's shape (checked at a fit's first step: a
        user's loss returning another shape would fail deep in a matmul, or broadcast)."""
        self._checked = True
        if tuple(result.grad.shape) != tuple(out.shape):
            raise ValueError(f"loss {self.loss.name!r}: its gradient has shape "
                             f"{tuple(result.grad.shape)}; expected the prediction's shape "
                             f"{tuple(out.shape)}")

    def _with_penalty(self, result: LossResult) -> LossResult:
        value = result.value
        for layer in self._penalized:
            reg = layer.penalty()
            if reg is not None:
                value = value + reg
        return result if value is result.value else result._replace(value=value)


class LogitsHead(OutputHead):
    """The loss applies the output layer's activation itself: the model stops before it,
    and the loss returns ``dL/dz`` (see ``Loss.compute_logits``)."""

    def forward(self, x, t, w=None, slots=None) -> LossResult:
        z = self.model.forward_batch(x, training=True, logits=True)
        result = self.loss.compute_logits(z, t, self.backend, weight=w)
        if not self._checked:
            self._check(result, z)
        return self._with_penalty(result) if self._penalized else result

    def backward(self, grad) -> None:
        self.model.backward_batch(grad, need_input_grad=False, logits=True)


class FusedHead(LogitsHead):
    """One backend kernel for the head: it adds the output layer's bias to ``x @ W``,
    applies the activation, computes the loss, ``dL/dz`` and the bias gradient, and writes
    the step's loss (and the metric at :attr:`metric_at`, when set) into the epoch
    buffers' slots. Where the kernel declines a batch (a dtype or layout it has no code
    for), the logits head's generic path runs instead for that batch.

    Parameters
    ----------
    model, loss
    metric_at : int or None
        Index of the fit's metric that the kernel computes exactly as the metric does.
    """

    writes_loss = True

    def __init__(self, model, loss, metric_at=None):
        super().__init__(model, loss)
        self.layer = model.output_layer()
        self.kind = loss.logits_of
        self.metric_at = metric_at
        self._bias_done = False  # this step's kernel wrote the bias gradient

    def forward(self, x, t, w=None, slots=None) -> LossResult:
        loss_slot, metric_slot = slots if slots is not None else (None, None)
        z = self.model.forward_batch(x, training=True, logits=True, add_bias=False)
        layer = self.layer
        out = None
        if z.dtype == self.backend.dtype:
            out = self.backend.fused_loss(self.kind, z, t, layer.params["b"],
                                          layer.grads["b"], loss_slot, metric_slot)
        self._bias_done = out is not None
        if out is None:
            z = z + layer.params["b"]
            return self._with_penalty(self.loss.compute_logits(z, t, self.backend))
        value, prob, grad = out
        return self._with_penalty(LossResult(value, grad, prob))

    def backward(self, grad) -> None:
        self.model.backward_batch(grad, need_input_grad=False, logits=True,
                                  bias_done=self._bias_done)

    def wrote_metric(self) -> bool:
        """Whether the last step's kernel wrote the metric slot (else it must be scored)."""
        return self._bias_done and self.metric_at is not None


def head_for(model, loss, metrics, *, weighted: bool = False, scaled: bool = False,
             labels: bool = True):
    """The head of a fit: chosen once, when the model and the loss meet.

    Parameters
    ----------
    model : Sequential
    loss : Loss
    metrics : list of Metric
        The fit's metrics (the fused kernel may compute one of them).
    weighted : bool
        Rows carry sample weights (the kernels know none).
    scaled : bool
        16-bit loss scaling scales the gradient (the kernels do not).
    labels : bool
        Targets are integer labels (the softmax kernel's accuracy compares labels).

    Returns
    -------
    OutputHead, LogitsHead or FusedHead
    """
    out = model.output_layer()
    if not (isinstance(out, Dense) and loss.takes_logits_from(out.activation)):
        return OutputHead(model, loss)
    # A subclass that changes the maths keeps them: only the exact classes whose loss the
    # kernels compute are fused (the flag counts where the class itself sets it).
    fusable = (not weighted and not scaled
               and type(loss).__dict__.get("takes_step_fusion", False)
               and loss.logits_of in model.backend.fused_losses)
    if not fusable:
        return LogitsHead(model, loss)
    wanted = {"softmax": _metrics.Accuracy if labels else None,
              "sigmoid": _metrics.Accuracy if model.output_dim == 1 else None,
              "identity": _metrics.MAE}.get(loss.logits_of)
    at = next((i for i, m in enumerate(metrics) if type(m) is wanted), None)
    return FusedHead(model, loss, at)
