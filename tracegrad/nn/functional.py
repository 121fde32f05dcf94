"""`tg.nn.functional`: PyTorch's functional layers and losses.

conv2d and max_pool2d are primitives (tracegrad/ops/nn.py); everything else is composed of op
table ops, so it differentiates to any order and fuses under `tg.jit` without a rule of its own.
Where PyTorch's node name matters to users it is kept (conv2d: ConvolutionBackward0); composites
show the name of their last op.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .. import creation, ops
from .. import functions as F
from ..autograd.grad_mode import no_grad
from ..ops.core import shape_error
from ..ops.nn import out_size, pair
from ..tape.ir import Var
from ..tensor import Tensor, _as_tensor, tracing

relu = F.relu
sigmoid = F.sigmoid
tanh = F.tanh
silu = F.silu
gelu = F.gelu
softmax = F.softmax
log_softmax = F.log_softmax


def relu6(input: Any) -> Tensor:  # noqa: A002
    return F.clamp(input, 0.0, 6.0)


def leaky_relu(input: Any, negative_slope: float = 0.01) -> Tensor:  # noqa: A002
    return F.where(input > 0, input, input * negative_slope)


# --------------------------------------------------------------------------------------------
# linear and convolution


def linear(input: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """input @ weight.T + bias, weight of shape (out_features, in_features)."""
    input = _as_tensor(input)
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise shape_error(
            "linear",
            f"the input's last dim must equal weight.shape[1] = in_features "
            f"({weight.shape[1] if weight.ndim == 2 else '?'})",
            input.shape,
            weight.shape,
            fix="Check in_features of the layer against the input, or flatten the input first",
        )
    if input.ndim > 2:
        # (..., C) as one (N, C) matrix: one GEMM forward and one for each gradient, where a
        # batched matmul runs one GEMM per leading index and sums the weight's gradient
        lead = input.shape[:-1]
        out = F.matmul(F.reshape(input, -1, input.shape[-1]), weight.T)
        out = F.reshape(out, *lead, weight.shape[0])
    else:
        out = F.matmul(input, weight.T)
    return out if bias is None else out + bias


def conv2d(
    input: Any,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) of (N, C, H, W) or (C, H, W) input."""
    input = _as_tensor(input)
    batched = input.ndim == 4
    if input.ndim == 3:
        input = input.unsqueeze(0)
    stride_ = pair("conv2d", "stride", stride, 1)
    dilation_ = pair("conv2d", "dilation", dilation, 1)
    if isinstance(padding, str):
        padding_ = _string_padding(padding, weight.shape[2:], stride_, dilation_)
    else:
        padding_ = pair("conv2d", "padding", padding, 0)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    out = ops.conv2d(
        input, weight, stride=stride_, padding=padding_, dilation=dilation_, groups=groups
    )
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out if batched else out.squeeze(0)


def _string_padding(padding: str, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    if padding == "valid":
        return (0, 0)
    if padding != "same":
        raise ValueError(f"conv2d: padding must be 'valid', 'same' or ints, got {padding!r}")
    if stride != (1, 1):
        raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if any(t % 2 for t in total):
        raise ValueError(
            f"conv2d: padding='same' with kernel {tuple(kernel)} and dilation {dilation} needs "
            "uneven padding, which tracegrad does not do; pass explicit padding and crop"
        )
    return (total[0] // 2, total[1] // 2)


# --------------------------------------------------------------------------------------------
# pooling


def _pool_args(
    op: str,
    input: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,  # noqa: A002
    ceil_mode: bool,
) -> tuple:
    if ceil_mode:
        raise ValueError(
            f"{op}: ceil_mode=True is not supported; pad the input (F.pad) so the windows fit"
        )
    input = _as_tensor(input)
    if input.ndim not in (3, 4):
        raise shape_error(op, "expected a (N, C, H, W) or (C, H, W) input", input.shape)
    kernel = pair(op, "kernel_size", kernel_size, 1)
    stride_ = kernel if stride is None or stride == [] else pair(op, "stride", stride, 1)
    padding_ = pair(op, "padding", padding, 0)
    if padding_[0] * 2 > kernel[0] or padding_[1] * 2 > kernel[1]:
        raise ValueError(
            f"{op}: padding {padding_} should be at most half of the kernel size {kernel}"
        )
    return input, kernel, stride_, padding_


def max_pool2d(
    input: Any,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Maximum over each window; with return_indices=True also the position of each window's
    first maximum in its input plane (h * W + w, PyTorch's indices; H * W for a window wholly
    in the padding, which has none)."""
    input, kernel, stride_, padding_ = _pool_args(
        "max_pool2d", input, kernel_size, stride, padding, ceil_mode
    )
    dilation_ = pair("max_pool2d", "dilation", dilation, 1)
    if input.ndim == 3:
        out = max_pool2d(
            input.unsqueeze(0), kernel, stride_, padding_, dilation_, False, return_indices
        )
        if return_indices:
            return out[0].squeeze(0), out[1].squeeze(0)
        return out.squeeze(0)
    window = {"kernel": kernel, "stride": stride_, "padding": padding_, "dilation": dilation_}
    out = ops.max_pool2d(input, **window)
    if return_indices:
        return out, ops.max_pool2d_argmax(input.detach(), out.detach(), **window)
    return out


def avg_pool2d(
    input: Any,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over each window: the sum of the unfolded window divided by its size (or by the
    number of real, unpadded, elements when count_include_pad=False)."""
    input, kernel, stride_, padding_ = _pool_args(
        "avg_pool2d", input, kernel_size, stride, padding, ceil_mode
    )
    if input.ndim == 3:
        return avg_pool2d(
            input.unsqueeze(0),
            kernel,
            stride_,
            padding_,
            False,
            count_include_pad,
            divisor_override,
        ).squeeze(0)
    window = {"kernel": kernel, "stride": stride_, "padding": padding_, "dilation": (1, 1)}
    cols = ops.unfold2d(input, **window)  # (C, kh, kw, N, OH, OW)
    total = ops.permute(ops.sum(cols, dims=(1, 2), keepdim=False), dims=(1, 0, 2, 3))
    if divisor_override is not None:
        return total / divisor_override
    if count_include_pad or padding_ == (0, 0):
        return total / (kernel[0] * kernel[1])
    ones = np.ones((1, 1) + tuple(input.shape[2:]))
    from ..ops.nn import _unfold_forward

    counts = _unfold_forward(ones, **window).sum(axis=(1, 2)).transpose(1, 0, 2, 3)
    return total / creation.tensor(counts, dtype=input.dtype)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging weights of PyTorch's adaptive windows
    [floor(i*size/out), ceil((i+1)*size/out))."""
    m = np.zeros((out, size))
    for i in range(out):
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d(input: Any, output_size: Any) -> Tensor:  # noqa: A002
    """Average over PyTorch's adaptive windows: a mean when the output is 1x1, an avg_pool2d
    when the sizes divide, two small matrix products (rows, then columns) otherwise."""
    input = _as_tensor(input)
    if input.ndim not in (3, 4):
        raise shape_error(
            "adaptive_avg_pool2d", "expected a (N, C, H, W) or (C, H, W) input", input.shape
        )
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    h, w = input.shape[-2:]
    oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {output_size}")
    if (oh, ow) == (1, 1):
        return F.mean(input, dim=(-2, -1), keepdim=True)
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    rows = creation.tensor(_adaptive_matrix(h, oh), dtype=input.dtype)
    cols = creation.tensor(_adaptive_matrix(w, ow).T, dtype=input.dtype)
    return F.matmul(F.matmul(rows, input), cols)


# --------------------------------------------------------------------------------------------
# normalization


def batch_norm(
    input: Any,  # noqa: A002
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over dim 1 of (N, C), (N, C, L) or (N, C, H, W) input.

    Training: normalizes with the batch's biased variance and, when running statistics are
    given, updates them in place (not recorded) with the UNBIASED variance, as PyTorch does.
    Evaluation: normalizes with the running statistics."""
    input = _as_tensor(input)
    if input.ndim < 2:
        raise shape_error(
            "batch_norm", "expected (N, C, ...) input with at least 2 dims", input.shape
        )
    c = input.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and tuple(t.shape) != (c,):
            raise shape_error(
                "batch_norm",
                f"{name} must have shape ({c},), one value per channel of dim 1",
                input.shape,
                t.shape,
            )
    dims = (0,) + tuple(range(2, input.ndim))
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if training:
        n = input.numel() // c if c else 0
        if n <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"size {list(input.shape)}; use a larger batch or model.eval()"
            )
        mean = F.mean(input, dim=dims, keepdim=True)
        centered = input - mean
        var = F.mean(centered * centered, dim=dims, keepdim=True)
        if running_mean is not None or running_var is not None:
            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean.reshape(c) * momentum)
                if running_var is not None:
                    running_var.mul_(1 - momentum).add_(var.reshape(c) * (momentum * n / (n - 1)))
        out = centered * F.rsqrt(var + eps)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation needs running_mean and running_var")
        scale = F.rsqrt(running_var.reshape(bshape) + eps)
        out = (input - running_mean.reshape(bshape)) * scale
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


def layer_norm(
    input: Any,  # noqa: A002
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize over the last len(normalized_shape) dims (biased variance, as PyTorch)."""
    input = _as_tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape) :]) != shape or len(shape) > input.ndim:
        raise shape_error(
            "layer_norm",
            f"the input's last dims must equal normalized_shape {list(shape)}",
            input.shape,
        )
    # one op (PyTorch's native_layer_norm): a fused kernel eagerly, its parts under tg.jit
    w = 1.0 if weight is None else weight
    b = 0.0 if bias is None else bias
    return ops.layer_norm(input, w, b, n=len(shape), eps=float(eps))


# --------------------------------------------------------------------------------------------
# dropout and embedding


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Zero each element with probability p and scale the rest by 1/(1-p); draws from
    tracegrad's generator (`tg.manual_seed`). Identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    input = _as_tensor(input)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        # the mask comes from the counter-based generator: inside tg.jit every call draws a
        # new one (ops/random.py); `p` may be a runtime scalar (a module's Dropout.p)
        u = creation._draw(tuple(input.shape), input.dtype if input.dtype.kind == "f" else "f4")
        keep = ops.astype(ops.ge(u, p), dtype=input.dtype)
        out = input * ops.div(keep, 1.0 - p)
    if inplace:
        input.copy_(out)
        return input
    return out


def embedding(input: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:  # noqa: A002
    """Rows of `weight` picked by the integer tensor `input`; the row at padding_idx gets no
    gradient (PyTorch's rule)."""
    input = _as_tensor(input)
    if input.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: indices must be an integer tensor, got {input.dtype} "
            f"(shape {tuple(input.shape)}); convert with .long()"
        )
    n = weight.shape[0]
    if type(input._data) is np.ndarray and input.numel():
        lo, hi = int(input._data.min()), int(input._data.max())
        if lo < -n or hi >= n:
            raise IndexError(
                f"embedding: index out of range: indices span [{lo}, {hi}] but the table has "
                f"{n} rows (weight shape {tuple(weight.shape)})"
            )
    out = weight[input]
    if padding_idx is not None:
        pad = (input == (padding_idx % n)).unsqueeze(-1)
        out = F.where(pad, out.detach(), out)
    return out


# --------------------------------------------------------------------------------------------
# losses


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(op: str, input: Tensor, target: Tensor) -> None:  # noqa: A002
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(
            f"{op}: using a target size ({list(target.shape)}) that is different to the input "
            f"size ({list(input.shape)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            stacklevel=3,
        )


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    input, target = _as_tensor(input), _as_tensor(target)
    _check_same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    input, target = _as_tensor(input), _as_tensor(target)
    _check_same_shape("l1_loss", input, target)
    return _reduce(F.abs(input - target), reduction, "l1_loss")


def binary_cross_entropy_with_logits(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """-[pos_weight * t * log sigmoid(x) + (1 - t) * log(1 - sigmoid(x))], computed stably."""
    input, target = _as_tensor(input), _as_tensor(target)
    if tuple(input.shape) != tuple(target.shape):
        raise shape_error(
            "binary_cross_entropy_with_logits",
            "target must have the same shape as input",
            input.shape,
            target.shape,
        )
    # log(1 + exp(-|x|)) + max(-x, 0) = -log sigmoid(x)
    softplus_neg = F.log1p(F.exp(-F.abs(input))) + F.relu(-input)
    if pos_weight is None:
        loss = (1 - target) * input + softplus_neg
    else:
        coef = 1 + (_as_tensor(pos_weight) - 1) * target
        loss = (1 - target) * input + coef * softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def _class_target(op: str, input: Tensor, target: Tensor) -> None:  # noqa: A002
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: class-index targets must be an integer tensor, got {target.dtype} (shape "
            f"{tuple(target.shape)}); use target.long(), or pass class probabilities with "
            "the input's shape and a floating dtype to cross_entropy"
        )
    want = (input.shape[0],) + tuple(input.shape[2:]) if input.ndim >= 2 else ()
    if tuple(target.shape) != want:
        raise shape_error(
            op,
            f"target must have shape {want}: the input's shape without the class dim 1",
            input.shape,
            target.shape,
        )


def nll_loss(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """-input[i, target[i]] (log-probabilities in, class indices as targets), weighted; the
    mean divides by the total weight of the non-ignored targets, as PyTorch."""
    input, target = _as_tensor(input), _as_tensor(target)
    _class_target("nll_loss", input, target)
    if input.ndim == 1:  # one sample, (C,) and a 0-d target
        return nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction)
    c = input.shape[1]
    valid = target != ignore_index
    safe = F.where(valid, target, 0)
    if type(safe._data) is np.ndarray and safe.numel():
        lo, hi = int(safe._data.min()), int(safe._data.max())
        if lo < 0 or hi >= c:
            raise IndexError(
                f"nll_loss: target {lo if lo < 0 else hi} is out of bounds for {c} classes "
                f"(input shape {tuple(input.shape)})"
            )
    if type(input._data) is Var:
        # compiled: pick by comparing with the class numbers instead of gathering. The
        # comparison and the where fuse into the loops over the logits (the loss reads them
        # once more with the log-softmax, the gradient is a where in the same pass), where a
        # gather would need log-probabilities in memory and its gradient a scatter into zeros.
        # Exact: the other classes add zeros. index_check keeps out-of-range labels an error.
        safe = ops.index_check(safe, size=c, what="nll_loss: target")
        classes = creation.arange(c).reshape((1, c) + (1,) * (input.ndim - 2))
        picked = F.where(classes == safe.unsqueeze(1), input, 0.0).sum(1)
    else:
        picked = F.gather(input, 1, safe.unsqueeze(1)).squeeze(1)
    w = valid.astype(input.dtype)
    if weight is not None:
        weight = _as_tensor(weight)
        if tuple(weight.shape) != (c,):
            raise shape_error(
                "nll_loss", f"weight must have shape ({c},)", input.shape, weight.shape
            )
        w = w * weight[safe]
    loss = -picked * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits (N, C, ...) or (C,) against class indices or class
    probabilities; PyTorch's weights, ignore_index and label smoothing."""
    input, target = _as_tensor(input), _as_tensor(target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    logp = F.log_softmax(input, dim=class_dim)
    c = input.shape[class_dim]
    if target.dtype.kind == "f":  # class probabilities
        if tuple(target.shape) != tuple(input.shape):
            raise shape_error(
                "cross_entropy",
                "probability targets must have the input's shape",
                input.shape,
                target.shape,
            )
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / c
        terms = logp * target
        if weight is not None:
            terms = terms * _as_tensor(weight).reshape((c,) + (1,) * (input.ndim - 1 - class_dim))
        loss = -terms.sum(class_dim)
        if reduction == "mean" and input.ndim > 1:
            return loss.sum() / (input.numel() // c)
        return _reduce(loss, reduction, "cross_entropy")
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    # PyTorch: (1 - eps) * nll + eps / C * (the same loss against the uniform distribution)
    if input.ndim == 1:
        logp, target = logp.unsqueeze(0), target.reshape(1)
    valid = (target != ignore_index).astype(input.dtype)
    per_class = logp
    if weight is not None:
        per_class = logp * _as_tensor(weight).reshape((1, c) + (1,) * (logp.ndim - 2))
    smooth = -per_class.sum(1) * valid
    if reduction == "mean":
        if weight is not None:
            safe = F.where(target != ignore_index, target, 0)
            smooth = smooth.sum() / (_as_tensor(weight)[safe] * valid).sum()
        else:
            smooth = smooth.sum() / valid.sum()
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return (1 - label_smoothing) * nll + (label_smoothing / c) * smooth


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows: `out[..., c] = (tensor[...] == c)`; `num_classes=-1` takes
    `tensor.max() + 1` (a value: not under tg.jit, where it must be given)."""
    t = _as_tensor(tensor)
    if t.dtype != np.int64:
        raise TypeError(
            f"one_hot is only applicable to index tensor of type LongTensor, got {t.dtype} "
            "(use t.long())"
        )
    if tracing.tracer is None and t.numel() > 0:
        values = t._data
        if values.min() < 0:
            raise RuntimeError("Class values must be non-negative.")
        if num_classes != -1 and values.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    if num_classes == -1:
        if t.numel() == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(t.max().item()) + 1
    classes = creation.arange(num_classes)
    return ops.astype(ops.eq(F.unsqueeze(t, -1), classes), dtype=np.dtype(np.int64))


def pad(input: Any, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:  # noqa: A002
    """Pad (or, with negative sizes, crop) the last dims: `pad = (left, right)` for the last
    dim, then `(top, bottom)` for the one before, ... Modes: "constant" (`value`, default 0),
    "reflect", "replicate", "circular". Gradients flow to the kept elements."""
    x = _as_tensor(input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) // 2 > x.ndim:
        raise ValueError(
            "Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pad)} and input of dimension {x.ndim}"
        )
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(
            f"pad: mode {mode!r} is not one of 'constant', 'reflect', 'replicate', 'circular'"
        )
    if mode != "constant" and value:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        n = x.shape[d]
        if mode == "constant":
            start, stop = max(-left, 0), n - max(-right, 0)
            if start or stop != n:
                x = x[(slice(None),) * d + (slice(start, stop),)]
            parts = []
            for size in (max(left, 0), max(right, 0)):
                shape = x.shape[:d] + (size,) + x.shape[d + 1 :]
                parts.append(creation.full(shape, 0 if value is None else value, dtype=x.dtype))
            if left > 0 or right > 0:
                x = F.cat([parts[0], x, parts[1]], d)
            continue
        if left < 0 or right < 0:
            raise ValueError(f"pad: negative padding is only supported in constant mode, got {pad}")
        if mode == "reflect" and (left >= n or right >= n):
            raise ValueError(
                f"Padding size should be less than the corresponding input dimension, but got: "
                f"padding ({left}, {right}) at dimension {d} of input {tuple(x.shape)}"
            )
        if mode == "circular" and (left > n or right > n):
            raise ValueError(
                f"pad: circular padding ({left}, {right}) is larger than dimension {d} of size {n}"
            )
        if mode == "reflect":
            index = (
                list(range(left, 0, -1)) + list(range(n)) + list(range(n - 2, n - 2 - right, -1))
            )
        elif mode == "replicate":
            index = [0] * left + list(range(n)) + [n - 1] * right
        else:
            index = list(range(n - left, n)) + list(range(n)) + list(range(right))
        x = F.index_select(x, d, creation.tensor(np.asarray(index, dtype=np.int64)))
    return x


def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over the last two dims, PyTorch's
    definition: `scale` defaults to 1/sqrt(E); `is_causal` masks keys after each query
    (a lower-triangular mask, top-left aligned); a bool `attn_mask` keeps True positions, a
    float one is added; `enable_gqa` repeats key/value heads to the query's."""
    q, k, v = _as_tensor(query), _as_tensor(key), _as_tensor(value)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            "scaled_dot_product_attention: query, key and value need at least 2 dims, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if is_causal and attn_mask is not None:
        raise ValueError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        groups = q.shape[-3] // k.shape[-3]
        heads = creation.tensor(np.repeat(np.arange(k.shape[-3]), groups))
        k = F.index_select(k, k.ndim - 3, heads)
        v = F.index_select(v, v.ndim - 3, heads)
    L, S = q.shape[-2], k.shape[-2]
    factor = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = F.matmul(q, F.transpose(k, -2, -1)) * factor
    if is_causal:
        keep = creation.tensor(np.tri(L, S, dtype=bool))
        scores = F.masked_fill(scores, ~keep, -math.inf)
    elif attn_mask is not None:
        m = _as_tensor(attn_mask)
        if m.dtype.kind == "b":
            scores = F.masked_fill(scores, ~m, -math.inf)
        else:
            scores = scores + m
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = dropout(weights, p=dropout_p, training=True)
    return F.matmul(weights, v)


__all__ = [
    "relu",
    "relu6",
    "leaky_relu",
    "gelu",
    "sigmoid",
    "tanh",
    "silu",
    "softmax",
    "log_softmax",
    "linear",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm",
    "layer_norm",
    "dropout",
    "embedding",
    "mse_loss",
    "l1_loss",
    "binary_cross_entropy_with_logits",
    "nll_loss",
    "cross_entropy",
    "one_hot",
    "pad",
    "scaled_dot_product_attention",
    "out_size",
    "math",
]
