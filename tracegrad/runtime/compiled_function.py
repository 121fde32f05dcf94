"""A jitted function that gradients flow through: compiled forward, compiled backward.

When a jitted call's outputs require grad and the function runs no backward itself (a
`tg.jit(model)` forward, `tg.grad(tg.jit(f))`), `tg.jit` traces the forward and then the
reverse sweep for symbolic output cotangents into one joint tape, and splits it
(`tape/split.py`) into a forward program (outputs + residuals) and a backward program
(residuals + cotangents -> gradients). A call runs the forward program and gives its
differentiable outputs one `CompiledFunctionBackward` node (PyTorch's name) whose
`next_functions` reach the inputs' nodes and the captured parameters' accumulators; the
reverse sweep (autograd/engine.py) runs the backward program through it and accumulates into
`.grad` exactly as for any other node. See docs/jit.md, "Gradients through a jitted function".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.engine import grad as autograd_grad
from ..autograd.engine import run_backward
from ..autograd.grad_mode import enable_grad, is_grad_enabled, state
from ..autograd.node import FREED_MESSAGE, Node
from ..autograd.pytree import flatten
from ..devices import to_device
from ..ops.core import Aval
from ..tape.ir import Var, WriteKind
from ..tape.split import Split
from ..tensor import Tensor, tracing


class JointTrace:
    """Wraps the traced function: after it returns, if its outputs require grad and it ran no
    backward, trace the reverse sweep for cotangent arguments into the same tape. Records what
    `JitFunction` needs to split the tape and to build the node at every call."""

    def __init__(self, fn: Any) -> None:
        self.fn = self.__wrapped__ = fn  # (the tracer looks for random generators through it)
        self.joint = False
        self.n_args = 0
        self.n_outputs = 0
        self.diff = []  # positions of the differentiable outputs among the output leaves
        self.wrt_args: list[int] = []  # positions (among the tape's args) given a gradient
        self.wrt_captured: list[int] = []  # positions among tape.captured
        self.has_grad: list[bool] = []  # which of those the traced sweep reached
        self.out_tree = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.fn(*args, **kwargs)
        tracer = tracing.tracer
        if not is_grad_enabled() or tracer.backward_calls:
            return out
        out_leaves, self.out_tree = flatten(out)
        diff = [
            i
            for i, o in enumerate(out_leaves)
            if isinstance(o, Tensor) and o.requires_grad and o.dtype.kind == "f"
        ]
        if not diff:
            return out
        tape = tracer.tape
        self.n_args = len(tape.args)
        self.n_outputs = len(out_leaves)
        self.diff = diff
        dyn = [x for x in flatten((args, kwargs))[0] if isinstance(x, Tensor)]
        wrt = []
        for k, t in enumerate(dyn):
            if t.requires_grad:
                self.wrt_args.append(k)
                wrt.append(t)
        position = {id(v): i for i, v in enumerate(tape.captured)}
        for rec in tracer.captured:
            t = rec.tensor
            if rec.requires_grad and t.dtype.kind == "f" and type(t._data) is Var:
                # the gradient stops here: what made the tensor outside is the caller's graph,
                # reached through this node's next_functions (the trace puts grad_fn back)
                t.grad_fn = None
                self.wrt_captured.append(position[id(t._data)])
                wrt.append(t)
        cotangents = []
        for i in diff:
            o = out_leaves[i]
            var = Var(Aval(tuple(o.shape), o.dtype), tape)
            tape.args.append(var)
            cotangents.append(Tensor._wrap(var))
        roots = [out_leaves[i] for i in diff]
        grads = run_backward(roots, cotangents, False, False, wrt, True) if wrt else []
        self.has_grad = [g is not None for g in grads]
        self.joint = True
        return out, [g for g in grads if g is not None]


class CompiledFunctionBackward(Node):
    """The `grad_fn` of a compiled call's differentiable outputs (output k >= 1 reaches it
    through an `OutputEdge`, as a `tg.autograd.Function`'s)."""

    __slots__ = ("program", "residuals", "saved", "n_outputs", "targets", "call")

    def __init__(
        self, program: AutogradProgram, targets: list, residuals: list, saved: list, call: Any
    ) -> None:
        nexts = tuple(
            ((t.grad_fn if t.grad_fn is not None else t._get_accumulator()), 0) for t in targets
        )
        super().__init__(None, {}, (), nexts)
        self.program = program
        self.targets = targets  # the tensors given gradients, in next_functions' order
        self.residuals = residuals
        self.saved = saved  # (tensor, its version counter, the version at the forward)
        self.n_outputs = len(program.out_avals)
        self.call = call  # (fn, args, kwargs): run again eagerly for create_graph=True

    @property
    def has_saved(self) -> bool:
        return True

    def release(self) -> None:
        self.freed = True
        self.residuals = None
        self.call = None

    def run(self, g: Any) -> list:
        for t, cell, version in self.saved:
            if cell[0] != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: [tensor of shape {list(t.shape)}], which is saved by "
                    f"CompiledFunctionBackward, is at version {cell[0]}; expected version "
                    f"{version} instead. Hint: do the in-place change after backward(), or use "
                    "an out-of-place op (x = x + 1 instead of x += 1)."
                )
        grads = g if type(g) is list else [g]
        if state.enabled:  # create_graph=True: gradients with a graph of their own
            return self._run_eagerly(grads)
        cotangents = []
        for gi, (shape, dtype) in zip(grads, self.program.out_avals):
            if gi is None:  # an output the loss does not use: a zero cotangent, where it lives
                zero = np.zeros(shape, dtype)
                cotangents.append(to_device(zero) if self.program.device == "cuda" else zero)
            else:
                d = gi._data
                cotangents.append(d if d.dtype == dtype else d.astype(dtype))
        outputs, _ = self.program.backward(self.residuals + cotangents, [])
        wrap = Tensor._wrap
        return [wrap(o) for o in outputs]

    def _run_eagerly(self, grads: list) -> list:
        """Higher order: run the function eagerly on the saved inputs, then the eager reverse
        sweep with create_graph=True. (The compiled backward is not itself differentiable.)"""
        if self.call is None:
            raise RuntimeError(FREED_MESSAGE)
        if self.program.writes_state:
            raise RuntimeError(
                "backward with create_graph=True through a jitted function that changes state "
                "when called (it writes a buffer or a parameter, or draws random numbers): "
                "running it again to build the higher-order graph would change that state "
                "twice. Compile the transform instead (tg.jit(tg.grad(...))), or call the "
                "function without tg.jit where you need higher-order gradients."
            )
        fn, args, kwargs = self.call
        with enable_grad():
            out = fn(*args, **kwargs)
        leaves = flatten(out)[0]
        roots, cots = [], []
        for i, gi in zip(self.program.diff, grads):
            if gi is not None and leaves[i].requires_grad:
                roots.append(leaves[i])
                cots.append(gi)
        if not roots:
            return [None] * len(self.targets)
        return list(autograd_grad(roots, self.targets, cots, True, True, allow_unused=True))


class AutogradProgram:
    """What a differentiable entry runs beyond its forward executable: the backward
    executable, where the residuals come from, and which inputs get gradients."""

    def __init__(
        self, joint: JointTrace, tape: Any, split: Split, backward: Any, device: str
    ) -> None:
        self.device = device
        self.joint_tape = tape  # the optimized joint tape the split was made from
        self.n_args = joint.n_args
        self.split = split
        self.backward = backward
        self.diff = joint.diff
        self.n_outputs = joint.n_outputs
        has = iter(joint.has_grad)
        self.wrt_args = [k for k in joint.wrt_args if next(has)]
        self.wrt_captured = [i for i in joint.wrt_captured if next(has)]
        fwd_outs = split.forward.outputs
        self.out_avals = [(tuple(fwd_outs[i].shape), fwd_outs[i].dtype) for i in joint.diff]
        self.writes_state = bool(split.forward.writes)
        # captured residuals the forward program overwrites: saved as copies before the call
        position = {id(v): i for i, v in enumerate(split.forward.captured)}
        written = {
            position[id(w.target)]
            for w in split.forward.writes
            if w.kind is WriteKind.DATA and w.target is not None and id(w.target) in position
        }
        self.captured_residuals = [r.index for r in split.residuals if r.kind == "captured"]
        self.copy_captured = set(self.captured_residuals) & written


__all__ = ["AutogradProgram", "CompiledFunctionBackward", "JointTrace"]
