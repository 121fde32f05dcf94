"""The package's import direction (docs/layout.md): a module imports only modules of its own
layer or the layers above it, at module level and inside functions alike, and no two modules
import each other (directly or around a circle). A lazy import inside a function is still an
import: it is how circles hid before."""

from __future__ import annotations

import ast
import pathlib

import tracegrad

ROOT = pathlib.Path(tracegrad.__file__).parent

# docs/layout.md's table: module path prefix -> layer (the longest prefix wins)
LAYERS = {
    "ops": 1,
    "devices": 2,
    "autograd.grad_mode": 2,
    "autograd.node": 2,
    "tape.errors": 2,
    "tape.ir": 2,
    "tape.printer": 2,
    "tensor": 3,
    "_tensor_str": 3,
    "_tensor_methods": 4,
    "functions": 4,
    "creation": 4,
    "numpy": 4,
    "autograd.engine": 5,
    "autograd.function": 5,
    "autograd": 6,
    "tape": 7,
    "trace": 8,
    "fuse": 9,
    "codegen": 10,
    "runtime": 11,
    "nn": 12,
    "optim": 12,
    "utils": 12,
    "distributed": 12,
    "models": 13,
    "io": 12,
    "torch_format": 12,
    "cuda": 12,
    "accelerator": 12,
    "": 14,  # tracegrad/__init__.py: the public namespace, imports everything
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(name: str) -> int:
    best = None
    for prefix, layer in LAYERS.items():
        if name == prefix or name.startswith(prefix + ".") or prefix == "":
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best[1]


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{target}.{alias.name}".lstrip(".")
                    hit = full if full in modules else target
                    if hit in modules and hit != name:
                        edges[name].add(hit)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for n in names:
                    if n.startswith("tracegrad."):
                        short = n[len("tracegrad.") :]
                        while short and short not in modules:
                            short = short.rpartition(".")[0]
                        if short in modules and short != name:
                            edges[name].add(short)
    return edges


def test_every_module_has_a_layer_in_the_layout() -> None:
    for name in _imports():
        assert _layer(name) is not None, name


def test_imports_go_up_the_layers_only() -> None:
    wrong = []
    for name, targets in _imports().items():
        for t in targets:
            # a package's __init__ may gather its own submodules
            if (
                t.startswith(name + ".")
                and (ROOT / name.replace(".", "/") / "__init__.py").exists()
            ):
                continue
            if _layer(t) > _layer(name):
                wrong.append(f"{name} (layer {_layer(name)}) imports {t} (layer {_layer(t)})")
    assert not wrong, "imports against docs/layout.md:\n" + "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    edges = _imports()
    # packages' __init__ files gather their submodules: an edge from a package to its own
    # submodule is not part of a circle among modules
    for name in edges:
        edges[name] = {t for t in edges[name] if not t.startswith(name + ".") or name == ""}
    edges[""] = set()
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                circles.append(stack[stack.index(w) :] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
