"""Make a stock ``lm_eval`` know dynheads, lazily (stdlib only, cheap at start-up).

``dynheads-autoload.pth`` (put into site-packages by ``pip install .`` and by
``pip install -e .``, see setup.py) imports this module at every interpreter start.
All it does then is put a small finder at the front of ``sys.meta_path``; nothing
of lm_eval, torch or dynheads' own code is imported. The finder acts only when
lm_eval itself imports one of two modules:

* ``lm_eval.api.registry``: the model ``dynheads`` is registered as a lazy
  placeholder (``dynheads.models.harness.lm:DynHeadsLM``), so ``lm_eval --model dynheads``
  works; lm_eval's own models are registered too (its ``get_model`` only fills
  them in while the registry is empty).
* ``lm_eval.tasks.manager``: every ``TaskManager`` also scans the installed
  ``dynheads/tasks`` folder (appended to ``include_path`` unless already there),
  so ``--tasks niah_uuid`` works without ``--include_path``.

When both have run the finder leaves ``sys.meta_path``. A hook that fails logs a
warning and lm_eval carries on without it. ``DYNHEADS_NO_AUTOLOAD=1`` turns it off.
"""

import os
import sys

MODEL_NAME = "dynheads"
MODEL_TARGET = "dynheads.models.harness.lm:DynHeadsLM"
TASKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")


def _warn(what, exc):
    import logging

    logging.getLogger("dynheads").warning(
        "dynheads: could not %s (%s: %s); lm_eval goes on without it",
        what, type(exc).__name__, exc,
    )


def _on_registry(module):
    registry = module.model_registry
    try:
        import lm_eval.models  # noqa: F401  (a dict of placeholders: cheap)
    except Exception as exc:  # noqa: BLE001
        _warn("register lm_eval's built-in models", exc)
    if MODEL_NAME not in registry:
        registry.register(MODEL_NAME, target=MODEL_TARGET)


def _same_dir(a, b):
    try:
        return os.path.realpath(os.fspath(a)) == os.path.realpath(os.fspath(b))
    except (TypeError, ValueError, OSError):
        return False


def _with_tasks_dir(include_path):
    if not os.path.isdir(TASKS_DIR):
        return include_path
    if not include_path:
        paths = []
    elif isinstance(include_path, (list, tuple)):
        paths = list(include_path)
    else:
        paths = [include_path]
    if any(_same_dir(p, TASKS_DIR) for p in paths):
        return include_path
    return paths + [TASKS_DIR]


def _on_task_manager(module):
    import functools
    import inspect

    cls = module.TaskManager
    original = cls.__init__
    if getattr(original, "_dynheads_wrapped", False):
        return
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        raise TypeError("TaskManager.__init__ has no include_path parameter")

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["include_path"] = _with_tasks_dir(
                bound.arguments.get("include_path")
            )
            args, kwargs = bound.args[1:], bound.kwargs
        except Exception as exc:  # noqa: BLE001
            _warn("add dynheads' tasks to lm_eval's TaskManager", exc)
        original(self, *args, **kwargs)

    __init__._dynheads_wrapped = True
    cls.__init__ = __init__


HOOKS = {
    "lm_eval.api.registry": _on_registry,
    "lm_eval.tasks.manager": _on_task_manager,
}


def _run_hook(name, hook, module):
    try:
        hook(module)
    except Exception as exc:  # noqa: BLE001
        _warn("hook into %s" % name, exc)


class _HookLoader:
    """Runs the real loader, gives the module its real loader back, then the hook."""

    def __init__(self, loader, name, hook, finder):
        self._loader, self._name, self._hook, self._finder = loader, name, hook, finder

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        try:
            self._loader.exec_module(module)
        finally:
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self._loader
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self._loader
        _run_hook(self._name, self._hook, module)
        self._finder.maybe_leave()

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


class PostImportFinder:
    """``sys.meta_path`` entry: a dict lookup for every import, work for two names."""

    def __init__(self, hooks):
        self.pending = dict(hooks)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        hook = self.pending.pop(fullname)
        spec.loader = _HookLoader(spec.loader, fullname, hook, self)
        return spec

    def maybe_leave(self):
        # Called after a module ran, never while the import system iterates sys.meta_path.
        if not self.pending:
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass


def install():
    """Put the finder in place (idempotent); run hooks at once for modules already loaded."""
    if any(isinstance(f, PostImportFinder) for f in sys.meta_path):
        return
    pending = {}
    for name, hook in HOOKS.items():
        module = sys.modules.get(name)
        if module is not None:
            _run_hook(name, hook, module)
        else:
            pending[name] = hook
    if pending:
        sys.meta_path.insert(0, PostImportFinder(pending))


if not os.environ.get("DYNHEADS_NO_AUTOLOAD"):
    install()
