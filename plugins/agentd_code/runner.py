"""The program run_python starts inside the sandbox: its text is passed to ``python -c``; it uses only stdlib.

It reads the cell from stdin and runs it as ``__main__``, printing a traceback without its own frames. As in a
notebook cell, when the last statement is a bare expression its value is printed (unless it is None). With
``AGENTD_SESSION`` set to a folder (relative to the workspace), state persists from call to call:

- top-level ``import``/``from`` statements, ``def``/``class`` statements and ``name = lambda ...`` are kept as
  source and re-run first (latest definition of a name wins), so functions and classes come back as code;
- every other global is pickled one by one after the cell (also after an exception) and unpickled after the
  definitions, so instances of the cell's own classes load; what does not pickle (open files, generators,
  sockets) is named on stderr as not kept.

Unpickling happens only here, inside the sandbox, on data the sandboxed code itself wrote: the daemon never
reads the state file, so a tampered file can do nothing the code could not do directly.
"""

import linecache
import os
import sys
import types

# ast, pickle and traceback are imported only when needed: every millisecond here is paid by every call.

STATE_FILE = "state.pkl"
CELL = "<cell>"


def _definition_key(node):
    """The key under which a top-level statement is kept as source, or None when it is not a definition."""
    import ast

    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "def:" + node.name
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "import:" + ast.unparse(node)
    if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)):
        return "def:" + node.targets[0].id
    return None


def definitions(tree, known=None):
    """Merge the cell's top-level definitions into ``known`` (key -> source), latest last."""
    import ast

    known = dict(known or {})
    for node in tree.body:
        key = _definition_key(node)
        if key is not None:
            known.pop(key, None)
            known[key] = ast.unparse(node)
    return known


def _restorable_by_source(name, value, defined):
    is_main = getattr(value, "__module__", None) == "__main__"
    return is_main and isinstance(value, (type, types.FunctionType)) and "def:" + name in defined


def snapshot(namespace, defined):
    """(values, modules, not_kept): picklable globals, module aliases, and names that could not be kept."""
    import pickle

    values, modules, not_kept = {}, {}, []
    for name, value in namespace.items():
        if name.startswith("__") or _restorable_by_source(name, value, defined):
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            continue
        try:
            values[name] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            not_kept.append(f"{name} ({type(value).__name__})")
    return values, modules, not_kept


def restore(state, namespace):
    """Re-run kept definitions, re-import modules, unpickle values; returns what could not be restored."""
    import pickle

    problems = []
    for key, source in state.get("defs", {}).items():
        try:
            exec(compile(source, "<session>", "exec"), namespace)
        except Exception as exc:
            problems.append(f"{key} ({type(exc).__name__}: {exc})")
    for name, module in state.get("modules", {}).items():
        try:
            namespace[name] = __import__(module, fromlist=["_"])
        except Exception as exc:
            problems.append(f"module {module} ({type(exc).__name__})")
    for name, blob in state.get("values", {}).items():
        try:
            namespace[name] = pickle.loads(blob)
        except Exception as exc:
            problems.append(f"{name} ({type(exc).__name__}: {exc})")
    return problems


def load_state(folder):
    import pickle

    try:
        with open(os.path.join(folder, STATE_FILE), "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        return {}


def save_state(folder, state):
    import pickle

    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, STATE_FILE + ".tmp")
    with open(temp, "wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temp, os.path.join(folder, STATE_FILE))  # a call killed mid-write keeps the previous state


def _print_exception(exc):
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != CELL:
        tb = tb.tb_next  # hide the runner's own frames
    traceback.print_exception(type(exc), exc, tb)


def _exit_status(exc):
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def confine():
    """Apply the sandbox's Landlock step (and cgroup join) here, before anything of the cell runs, when the
    sandbox left it to this process (``AGENTD_CONFINE``): it saves starting a Python just for that step."""
    spec = os.environ.pop("AGENTD_CONFINE", "")
    if spec:
        import marshal

        steps = {"__name__": "agentd_confine"}
        exec(globals()["CONFINE_SOURCE"], steps)
        steps["apply"](marshal.loads(bytes.fromhex(spec)))


def main():
    confine()
    code = sys.stdin.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the cell has no input of its own (sys.stdin is at its end already)
    os.close(devnull)
    session = os.environ.pop("AGENTD_SESSION", "")
    sys.argv = [CELL]
    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    namespace = module.__dict__
    linecache.cache[CELL] = (len(code), None, code.splitlines(True), CELL)
    state = load_state(session) if session else {}
    if state:
        problems = restore(state, namespace)
        if problems:
            print("[session] could not restore: " + ", ".join(problems), file=sys.stderr)
    status = 0
    tree = None
    try:
        import ast

        tree = ast.parse(code, CELL)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, CELL, "exec"), namespace)
        if last is not None:  # like a notebook cell or the REPL: a bare last expression shows its value
            value = eval(compile(ast.Expression(last.value), CELL, "eval"), namespace)
            if value is not None:
                print(repr(value))
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        _print_exception(exc)
        status = 1
    if session and tree is not None:
        defined = definitions(tree, state.get("defs"))
        values, modules, not_kept = snapshot(namespace, defined)
        try:
            save_state(session, {"defs": defined, "values": values, "modules": modules})
        except OSError as exc:
            print(f"[session] state not saved: {exc}", file=sys.stderr)
        if not_kept:
            print("[session] not kept for the next call: " + ", ".join(not_kept), file=sys.stderr)
    sys.exit(status)  # a normal exit: atexit handlers run and files the cell left open are flushed


if __name__ == "__main__":
    main()
