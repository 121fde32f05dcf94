"""`nn.Module`, `Sequential`, `ModuleList`: PyTorch's module system.

Parameters, buffers and submodules are registered by attribute assignment and kept in three
ordered dicts; every traversal (`named_parameters`, `state_dict`, `modules`) walks them in
registration order with dotted names, so keys are PyTorch's (`layer1.0.conv1.weight`,
`bn1.running_mean`, `bn1.num_batches_tracked`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, _check_device, _move, tracing
from ..trace.pystate import module_edits
from .parameter import Parameter


class _IncompatibleKeys:
    """What `load_state_dict(strict=False)` returns: the keys it did not use or did not find."""

    def __init__(self, missing_keys: list, unexpected_keys: list) -> None:
        self.missing_keys = missing_keys
        self.unexpected_keys = unexpected_keys

    def __iter__(self) -> Iterator:
        return iter((self.missing_keys, self.unexpected_keys))

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
            f"unexpected_keys={self.unexpected_keys})"
        )


class Module:
    """Base class of every layer and model; subclass it and define `forward`."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = tracing.tracer
        if tracer is not None:
            # its flags, numbers and parameters are guards and runtime scalars of the trace
            tracer.note_module(self)
        return self.forward(*args, **kwargs)

    # registration -------------------------------------------------------------------------

    def _check_init(self) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign to {type(self).__name__} before Module.__init__() is called: "
                "call super().__init__() first in your __init__"
            )

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_init()
        _check_name("parameter", name, self)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(tg.nn.Parameter or None required)"
            )
        self._parameters[name] = param
        module_edits.count += 1  # compiled functions recheck their module guards

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        self._check_init()
        _check_name("buffer", name, self)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                "(tg.Tensor or None required)"
            )
        self._buffers[name] = tensor
        module_edits.count += 1
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_init()
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f'module name must be a non-empty string without ".", got {name!r}')
        self._modules[name] = module
        module_edits.count += 1

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        module_edits.count += 1  # compiled functions recheck their module guards
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._check_init()
            _remove_from(self, name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(tg.nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._check_init()
            _remove_from(self, name)
            self._modules[name] = value
        elif (modules := self.__dict__.get("_modules")) is not None and name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(tg.nn.Module or None expected)"
                )
            modules[name] = None
        elif (buffers := self.__dict__.get("_buffers")) is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                    "(tg.Tensor or None expected)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                tracer = tracing.tracer
                if tracer is not None:
                    tracer.note_module(self)
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        module_edits.count += 1
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list:
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    # traversal ---------------------------------------------------------------------------

    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(
                memo, prefix + ("." if prefix else "") + name, remove_duplicate
            )

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool) -> Iterator:
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield mod_prefix + ("." if mod_prefix else "") + name, v

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) in registration order; a parameter shared by two modules once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Any) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # modes, gradients, devices -------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        module_edits.count += 1
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.parameters(), set_to_none)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """`to(device)` and/or `to(dtype)` (floating parameters and buffers only, as PyTorch).

        The change is made in place on the same Parameter objects, so an optimizer built
        before the call keeps working."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        for a in args:
            if isinstance(a, str) or type(a).__name__ == "Device":
                device = a
            else:
                dtype = a
        if device is not None:
            device = _check_device(device)
            # in place on the same Parameter objects, as PyTorch's Module.to (optimizer state
            # made before the move stays where it was: move the module first)
            for m in self.modules():
                for store in (m._parameters, m._buffers):
                    for t in store.values():
                        if t is not None and t.device != device:
                            t._data = _move(t._data, device)
                            t._version[0] += 1
                            if t._grad is not None:
                                t._grad = t._grad.detach().to(device)
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
            for m in self.modules():
                for store in (m._parameters, m._buffers):
                    for t in store.values():
                        if t is not None and t.dtype.kind == "f" and t.dtype != dtype:
                            t._data = t.detach().astype(dtype)._data
                            t._version[0] += 1
                            if t._grad is not None:
                                t._grad = t._grad.astype(dtype)
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    # state dicts ---------------------------------------------------------------------------

    def state_dict(self, destination: Any = None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name, in registration order."""
        out = OrderedDict() if destination is None else destination
        # every path to a module, as PyTorch (a shared module appears under each name)
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent_buffers:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> _IncompatibleKeys:
        """Copy values into the existing parameters and buffers (in place, so optimizers and
        jitted functions that captured them keep working). Errors are PyTorch's."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append(
                    "Unexpected key(s) in state_dict: "
                    + ", ".join(f'"{k}"' for k in unexpected)
                    + ". "
                )
            if missing:
                errors.append(
                    "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". "
                )
        updates = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            value = state_dict[k]
            array = (
                value._concrete("load_state_dict")
                if isinstance(value, Tensor)
                else (np.asarray(value))
            )
            if array.shape != target.shape:
                errors.append(
                    f"size mismatch for {k}: copying a param with shape {tuple(array.shape)} "
                    f"from checkpoint, the shape in current model is {tuple(target.shape)}."
                )
                continue
            updates.append((target, array))
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        with no_grad():
            for target, array in updates:
                target.copy_(Tensor(array))
        return _IncompatibleKeys(missing, unexpected)

    # printing -------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            text = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {text}")
        head = type(self).__name__ + "("
        if not self._modules and len(lines) <= 1:
            return head + "".join(lines) + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def zero_grads(params: Iterable[Tensor], set_to_none: bool = True) -> None:
    """`.grad = None` for each parameter (PyTorch 2's default), or zero it in place."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            with no_grad():
                p.grad.zero_()


def _check_name(kind: str, name: Any, module: Module) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if "." in name or name == "":
        raise KeyError(f'{kind} name must be a non-empty string without ".", got {name!r}')
    if name in module.__dict__ and name not in ("training",):
        raise KeyError(f"attribute '{name}' already exists")


def _remove_from(module: Module, name: str) -> None:
    for store in ("_parameters", "_buffers", "_modules"):
        d = module.__dict__.get(store)
        if d is not None and name in d:
            del d[name]
    module.__dict__.pop(name, None)


class Sequential(Module):
    """Modules called in order; `Sequential(a, b)` or `Sequential(OrderedDict(name=a, ...))`."""

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, idx: Any) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[_index(idx, len(items))][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules)[_index(idx, len(self._modules))]
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered under the names "0", "1", ..."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx: Any) -> Any:
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        return items[_index(idx, len(items))]

    def __setitem__(self, idx: int, module: Module) -> None:
        self.add_module(str(_index(idx, len(self._modules))), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward: iterate over it in your forward")


def _index(idx: int, n: int) -> int:
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for a container of {n} modules")
    return idx % n


class ModuleDict(Module):
    """A dict of modules, registered under their keys, in insertion order."""

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        module_edits.count += 1

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Any:
        return self._modules.keys()

    def items(self) -> Any:
        return self._modules.items()

    def values(self) -> Any:
        return self._modules.values()

    def pop(self, key: str) -> Module:
        v = self[key]
        del self[key]
        return v

    def clear(self) -> None:
        self._modules.clear()
        module_edits.count += 1

    def update(self, modules: Any) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward: index it in your forward")


class ParameterList(Module):
    """A list of parameters, registered under the names "0", "1", ...; plain tensors given to
    it become Parameters, as in PyTorch."""

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        for v in values or ():
            self.append(v)

    def append(self, value: Any) -> ParameterList:
        self.register_parameter(str(len(self._parameters)), _as_parameter(value))
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, idx: Any) -> Any:
        items = list(self._parameters.values())
        if isinstance(idx, slice):
            return ParameterList(items[idx])
        return items[_index(idx, len(items))]

    def __setitem__(self, idx: int, value: Any) -> None:
        self.register_parameter(str(_index(idx, len(self._parameters))), _as_parameter(value))

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ParameterList has no forward: index it in your forward")


class ParameterDict(Module):
    """A dict of parameters, registered under their keys."""

    def __init__(self, parameters: Any = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.register_parameter(key, _as_parameter(value))

    def __delitem__(self, key: str) -> None:
        del self._parameters[key]
        module_edits.count += 1

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: object) -> bool:
        return key in self._parameters

    def keys(self) -> Any:
        return self._parameters.keys()

    def items(self) -> Any:
        return self._parameters.items()

    def values(self) -> Any:
        return self._parameters.values()

    def update(self, parameters: Any) -> None:
        items = parameters.items() if hasattr(parameters, "items") else parameters
        for k, v in items:
            self[k] = v

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ParameterDict has no forward: index it in your forward")


def _as_parameter(value: Any) -> Any:
    if value is None or isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value.detach())
    raise TypeError(
        f"a parameter container holds tensors, got {type(value).__name__} (tg.tensor(...) it)"
    )
