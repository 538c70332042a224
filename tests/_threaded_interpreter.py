"""Run Triton kernels under the interpreter with every program in its own thread.

Triton's interpreter (``TRITON_INTERPRET=1``) runs the programs of a launch one after
another, so a kernel whose programs wait for each other (recur's grid barrier) would spin
forever. :func:`install` replaces the interpreter's grid executor with one that starts one
thread per program (the program id becomes thread-local) and joins them, so the grid and
stream kernels can run with several programs per batch tile on a CPU: programs really meet
at the barrier and exchange h, dr and the layer-norm statistics through global buffers.
The interleaving is Python's (a tiny switch interval makes it fine-grained); the GPU memory
model is not simulated.

This reaches into the interpreter's internals (``triton.runtime.interpreter``, Triton 3.x):
:func:`install` raises ``RuntimeError`` naming what is missing when they differ. Used by
``tests/_grid_threads.py`` in a subprocess (a kernel bug that breaks the barrier hangs there,
not in the test process).
"""

from __future__ import annotations

import inspect
import random
import sys
import threading

_NEEDED = ("GridExecutor", "InterpreterBuilder", "interpreter_builder", "_patch_lang",
           "_implicit_cvt")
_EXECUTOR_NEEDED = ("_init_args_hst", "_restore_args_dev", "fn", "grid", "pre_run_hooks",
                    "constexprs")


def install(seed: int = 0, jitter: float = 0.0) -> None:
    """Patch the interpreter (call after ``TRITON_INTERPRET=1`` is set, before launching).

    ``jitter`` > 0: a third of the loads and stores first sleep up to that many seconds, so
    that programs drift apart between barriers and a missing barrier shows up as a wrong
    result rather than being hidden by Python's near-lockstep scheduling."""
    import time

    import triton.runtime.interpreter as interp

    missing = [n for n in _NEEDED if not hasattr(interp, n)]
    missing += [f"GridExecutor.{n}" for n in ("_init_args_hst", "_restore_args_dev")
                if not hasattr(interp.GridExecutor, n)]
    if not hasattr(interp.InterpreterBuilder, "set_grid_idx"):
        missing.append("InterpreterBuilder.set_grid_idx")
    if missing:
        raise RuntimeError("this Triton's interpreter lacks " + ", ".join(missing))
    sys.setswitchinterval(1e-5)
    if jitter > 0:
        delays = random.Random(seed + 1)

        def delayed(method):
            def wrapper(self, *args, **kwargs):
                if delays.random() < 0.3:
                    time.sleep(delays.random() * jitter)
                return method(self, *args, **kwargs)
            return wrapper

        for name in ("create_masked_load", "create_masked_store"):
            if not hasattr(interp.InterpreterBuilder, name):
                raise RuntimeError(f"this Triton's interpreter lacks InterpreterBuilder.{name}")
            setattr(interp.InterpreterBuilder, name,
                    delayed(getattr(interp.InterpreterBuilder, name)))
    # a program that raises never reaches the barrier, and the others would spin there
    # forever: once one has failed, every atomic (the barrier's spin) raises in the others,
    # so the launch ends with the first program's error instead of hanging
    failed = threading.Event()

    def abortable(method):
        def wrapper(self, *args, **kwargs):
            if failed.is_set():
                raise RuntimeError("another program of this launch failed")
            return method(self, *args, **kwargs)
        return wrapper

    for name in ("create_atomic_rmw", "create_atomic_cas", "create_atomic_load",
                 "create_atomic_poll"):
        if hasattr(interp.InterpreterBuilder, name):
            setattr(interp.InterpreterBuilder, name,
                    abortable(getattr(interp.InterpreterBuilder, name)))
    # the first call of each device function rewrites it and adds the interpreter's names to
    # its module's globals (``_compile_and_exec``) while other programs may be iterating
    # those globals in ``_patch_lang``: "dictionary changed size during iteration" (seen once
    # in CI). One lock around both; the rewrite happens once per function.
    guard = threading.RLock()

    def guarded(fn):
        def wrapper(*args, **kwargs):
            with guard:
                return fn(*args, **kwargs)
        return wrapper

    if not getattr(interp._patch_lang, "_recur_guarded", False):
        interp._patch_lang = guarded(interp._patch_lang)
        interp._patch_lang._recur_guarded = True
        if hasattr(interp, "InterpretedFunction") and hasattr(interp.InterpretedFunction,
                                                              "rewrite"):
            interp.InterpretedFunction.rewrite = guarded(interp.InterpretedFunction.rewrite)
    local = threading.local()
    interp.InterpreterBuilder.grid_idx = property(
        lambda self: getattr(local, "idx", None), lambda self, v: setattr(local, "idx", v))
    order = random.Random(seed)

    def call(self, *args_dev, **kwargs):
        for name in _EXECUTOR_NEEDED:
            if not hasattr(self, name):
                raise RuntimeError(f"this Triton's GridExecutor lacks {name}")
        spec = inspect.getfullargspec(self.fn)
        kwargs = {k: v for k, v in kwargs.items() if k in spec.args or k in spec.kwonlyargs}
        args_hst, kwargs_hst = self._init_args_hst(args_dev, kwargs)
        for hook in self.pre_run_hooks:
            hook(*args_hst, **kwargs_hst)
        scope = interp._patch_lang(self.fn)
        try:
            args = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
            args = {k: v if k in self.constexprs else interp._implicit_cvt(v)
                    for k, v in args.items()}
            grid = self.grid(args) if callable(self.grid) else self.grid
            grid = tuple(grid) + (1,) * (3 - len(grid))
            interp.interpreter_builder.set_grid_dim(*grid)
            errors: list[BaseException] = []
            failed.clear()

            def program(x: int, y: int, z: int) -> None:
                try:
                    interp.interpreter_builder.set_grid_idx(x, y, z)
                    self.fn(**args)
                except BaseException as e:  # noqa: BLE001  (re-raised below)
                    errors.append(e)
                    failed.set()

            threads = [threading.Thread(target=program, args=(x, y, z), daemon=True)
                       for x in range(grid[0]) for y in range(grid[1]) for z in range(grid[2])]
            order.shuffle(threads)  # start order varies: no program may rely on it
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        finally:
            scope.restore()
        self._restore_args_dev(args_dev, args_hst, kwargs, kwargs_hst)

    interp.GridExecutor.__call__ = call
