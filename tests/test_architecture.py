"""The layers' rules (docs/engine.md): the core imports no Streamlit, and no module of the project
imports one that (directly or not) imports it back."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_core_module_loads_no_streamlit():
    code = (
        "import importlib, json, pkgutil, sys, rmtllmf_core\n"
        "names = [m.name for m in pkgutil.walk_packages(rmtllmf_core.__path__, 'rmtllmf_core.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(json.dumps({'modules': len(names), 'streamlit': sorted(m for m in sys.modules\n"
        "                  if m.split('.')[0] == 'streamlit')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["modules"] > 30 and seen["streamlit"] == []


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted([*ROOT.glob("rmtllmf_core/**/*.py"), *ROOT.glob("studio/*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (inside functions too: a lazy import
    is still a dependency), except its own packages."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1])
                module = base + ("." + node.module if node.module else "")
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        out |= {t for t in targets if t in mods and t != name and not name.startswith(t + ".")}
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    assert len(mods) > 40 and sum(map(len, graph.values())) > 100
    assert cycles == []


def test_imports_count_relative_and_lazy_ones(tmp_path):
    pkg = tmp_path / "rmtllmf_core"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    mods = {"rmtllmf_core.a": pkg / "a.py", "rmtllmf_core.b": pkg / "b.py"}
    assert _imports("rmtllmf_core.a", mods["rmtllmf_core.a"], mods) == {"rmtllmf_core.b"}
    assert _imports("rmtllmf_core.b", mods["rmtllmf_core.b"], mods) == {"rmtllmf_core.a"}


# The floor plan (docs/engine.md): each tier imports only from its own tier or those below it.
TIERS = ("ground", "zoo", "science", "experiment", "studies", "serve", "commands", "studio")
GROUND = {"rmtllmf_core", "rmtllmf_core.errors", "rmtllmf_core.units", "rmtllmf_core.validation",
          "rmtllmf_core.cache", "rmtllmf_core.__main__"}


def _tier(module: str) -> str:
    if module.startswith("studio"):
        return "studio"
    if module in GROUND:
        return "ground" if module != "rmtllmf_core.__main__" else "commands"
    return module.split(".")[1]


def test_no_module_imports_from_a_higher_tier():
    mods = _modules()
    top = {m for m in mods if m.startswith("rmtllmf_core.") and m.count(".") == 1
           and not (ROOT / "rmtllmf_core" / m.split(".")[1]).is_dir()}
    assert top <= GROUND, f"top-level modules beyond the ground floor: {sorted(top - GROUND)}"
    assert len(top) <= 8
    rank = {t: i for i, t in enumerate(TIERS)}
    unknown = {m for m in mods if _tier(m) not in rank}
    assert not unknown, f"modules outside the tiers: {sorted(unknown)}"
    upward = sorted(f"{m} ({_tier(m)}) imports {d} ({_tier(d)})" for m, p in mods.items()
                    for d in _imports(m, p, mods) if rank[_tier(d)] > rank[_tier(m)]
                    and not (m == "rmtllmf_core" and d.startswith("rmtllmf_core.")))
    assert upward == []


def test_the_public_face_resolves_lazily():
    code = ("import sys, rmtllmf_core as r\n"
            "assert 'torch' not in sys.modules, 'the package alone must not import torch'\n"
            "names = [n for n in r.__all__]\n"
            "assert all(getattr(r, n) is not None for n in names)\n"
            "print(len(names))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= 10
