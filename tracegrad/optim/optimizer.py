"""`Optimizer`: parameter groups, per-parameter state, `zero_grad`, state dicts (PyTorch's).

Updates are in-place tensor ops under `no_grad`, so the same `step()` runs eagerly and inside
`tg.jit`, where the parameters, `.grad`s and state buffers are captured state (docs/jit.md).
State that an optimizer creates lazily on its first step (momentum buffers, Adam's moments)
cannot be created inside a trace: `require_concrete_state` makes `tg.jit` run that first call
eagerly and compile from the second call on.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .. import creation
from ..autograd.grad_mode import no_grad
from ..nn.module import zero_grads
from ..tensor import Tensor, tracing
from ..trace.pystate import ParamGroup
from ..trace.tracer import require_concrete_state


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    def __init__(self, params: Any, defaults: dict) -> None:
        self.defaults = defaults
        self.state: dict[Tensor, dict] = {}
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params argument given to the optimizer should be an "
                "iterable of Tensors or dicts, but got a Tensor (wrap it in a list: [t])"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        # a ParamGroup hands its numbers to tg.jit as runtime scalars (trace/pystate.py)
        group = ParamGroup(group)
        group.index = len(self.param_groups)
        group.owner = weakref.ref(self)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}"
                )
            if p.grad_fn is not None:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"can't optimize a tensor of dtype {p.dtype} (not floating)")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if tracing.tracer is not None:
            tracing.tracer.note_optimizer(self)
        zero_grads((p for g in self.param_groups for p in g["params"]), set_to_none)

    def _state_for(self, p: Tensor, make: Any) -> dict:
        """The state of `p`, created by `make()` on first use (eagerly: see the module doc)."""
        st = self.state.get(p)
        if st is None:
            require_concrete_state(f"{type(self).__name__} state")
            with no_grad():
                st = make()
            self.state[p] = st
        return st

    def step(self, closure: Any = None) -> Any:
        if tracing.tracer is not None:
            tracing.tracer.note_optimizer(self)
        self._opt_called = True  # what an LR scheduler's step-order warning looks for
        loss = None
        if closure is not None:
            from ..autograd.grad_mode import enable_grad

            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad, group)
        return loss

    def _update(self, p: Tensor, grad: Tensor, group: dict) -> None:
        raise NotImplementedError

    # state dicts ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """{"state": {index: {name: value}}, "param_groups": [{hyperparameters, "params":
        [index, ...]}]}, parameters numbered in group order, as PyTorch's."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for p, st in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {
                    k: (v.detach().clone() if isinstance(v, Tensor) else v) for k, v in st.items()
                }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        params = []
        for saved, own in zip(groups, self.param_groups):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group ({len(saved['params'])} vs {len(own['params'])})"
                )
            params.extend(zip(saved["params"], own["params"]))
        by_index = {i: p for i, p in params}
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        with no_grad():
            for i, values in saved_state.items():
                p = by_index[i]
                own = self.state.setdefault(p, {})
                for k, v in values.items():
                    if isinstance(v, (Tensor, np.ndarray)):
                        arr = v.detach().numpy() if isinstance(v, Tensor) else v
                        if k != "step":
                            arr = arr.astype(p.dtype)
                        if isinstance(own.get(k), Tensor) and own[k].shape == arr.shape:
                            own[k].copy_(creation.tensor(arr))  # in place: jit keeps its capture
                        else:
                            own[k] = creation.tensor(np.array(arr))
                    else:
                        own[k] = v
        for saved, own in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    own[k] = v

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def check_hyper(what: str, value: Any, low: float = 0.0, high: float | None = None) -> None:
    """PyTorch's "Invalid learning rate: -1" errors for hyperparameters out of range."""
    if not isinstance(value, (int, float)) or value < low or (high is not None and value >= high):
        raise ValueError(f"Invalid {what}: {value}")
