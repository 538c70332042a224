"""The ``recur`` command: train, evaluate and use the lessons and data tasks from a shell.

    recur tasks                              # every task, one line each
    recur train hello                        # the task's defaults do the right thing
    recur train sine-cos --hidden 32 --epochs 5 --out runs/sc
    recur train sine-cos --out runs/sc --resume --epochs 20   # continue a run
    recur eval runs/sc                       # recompute the final metrics from the checkpoint
    recur predict runs/hello --text hello    # task-specific use of a trained run (a table)
    recur predict runs/hello --json          # the same as one JSON line, for programs
    recur env                                # versions, devices, backends
    recur diagnose gradients --seq-len 100   # why gates matter: ||dL/dh_t|| for RNN/LSTM/GRU
    torchrun --standalone --nproc_per_node 2 -m recur train lagged-sine   # DDP (gloo on CPU)

Every run writes config.json, metrics.jsonl, metrics.json, checkpoint.pt and PNG plots to its
``--out`` directory; the last line printed is a one-line summary of the final metrics.

Errors exit with status 2 and never show a traceback: a mistake in the command line itself (an
unknown flag, a bad choice) prints the usage and then ``recur train: error: ...``; an error found
after that (a data file, a column, a damaged run directory) is one line on stderr,
``recur train forecast: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..tasks import COMMON_OPTIONS, Option, all_tasks, get_task, resolve_config
from ..train.progress import Reporter, format_value
from .progress import TerminalReporter
from .table import format_result

__all__ = ["main", "build_parser", "summary_line"]

log = logging.getLogger("recur")

EPILOG = "Run `recur train TASK --help` for a task's options."
TRAIN_USAGE = "usage: recur train TASK [options]  (`recur train --help` lists the tasks)"
#: what a task, the data readers and the run files raise for input that is wrong (a missing
#: or malformed file, a bad column, an impossible value, a loss that diverged): one line
RUN_ERRORS = (ValueError, OSError, FloatingPointError)


def _add_option(group, option: Option, shown_default: Any = None) -> None:
    """Turn an :class:`Option` into a flag whose argparse default is None ("not given")."""
    help_text = option.help
    if shown_default is not None:
        help_text += f" (default: {shown_default})"
    kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": help_text}
    if option.type is bool:
        group.add_argument(option.flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    metavar = None if option.choices else option.name.upper().replace("_", "-")
    if option.multiple:  # a repeatable flag: the list of the values given
        kwargs["action"] = "append"
    group.add_argument(option.flag, type=option.type, choices=option.choices, metavar=metavar,
                       **kwargs)


def summary_line(name: str, metrics: dict[str, Any], extra: Sequence[str] = ()) -> str:
    """``"hello: prediction=ohlol loss=0.0817 | 15 epochs | 1.2 s | runs/hello"``."""
    parts = [f"{k}={format_value(v)}" for k, v in metrics.items()
             if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return " | ".join([f"{name}: " + " ".join(parts), *extra])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recur", description="Recurrent networks on the command line: the classic RNN "
        "lessons and real sequence data as measured, plotted experiments.", epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("tasks", help="list the tasks")
    sub.add_parser("train", help="train a task: recur train TASK [options]", add_help=False)
    p = sub.add_parser("eval", help="recompute a run's final metrics from its checkpoint")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sub.add_parser("predict", help="use a trained run: recur predict RUN_DIR [options]",
                   add_help=False)
    sub.add_parser("env", help="versions of python, torch, triton; devices; backends")
    p = sub.add_parser("export", help="export a run's recurrent layer to ONNX's own "
                       "RNN/LSTM/GRU operators: recur export RUN_DIR OUT.onnx",
                       description="Write the recurrent layer of the run in RUN_DIR to OUT.onnx "
                       "as ONNX's own RNN/LSTM/GRU operators. OUT.onnx is a path like any "
                       "other: a relative one (model.onnx) is relative to the current "
                       "directory, not to RUN_DIR; an existing file is replaced.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write; a relative path "
                   "is relative to the current directory (not to RUN_DIR)")
    p = sub.add_parser("diagnose", help="diagnostics: recur diagnose gradients")
    dsub = p.add_subparsers(dest="diagnosis", metavar="DIAGNOSIS", required=True)
    g = dsub.add_parser("gradients", help="||dL/dh_t|| over t and eig(W_hh) for RNN/LSTM/GRU "
                        "on the adding problem")
    from ..tasks.diagnose import OPTIONS as DIAGNOSE_OPTIONS

    for option in DIAGNOSE_OPTIONS:
        _add_option(g, option, option.default)
    return parser


# ---- train ------------------------------------------------------------------------------
def _train_usage() -> str:
    tasks = all_tasks()
    width = max(map(len, tasks), default=4)
    lines = [f"  {n:<{width}}  {t.summary}" for n, t in tasks.items()]
    return "usage: recur train TASK [options]\n\ntasks:\n" + "\n".join(lines) + "\n\n" + EPILOG


def _task_parser(name: str) -> argparse.ArgumentParser:
    task_cls = get_task(name)
    defaults = resolve_config(task_cls).to_dict()
    doc = (task_cls.__module__ and sys.modules[task_cls.__module__].__doc__) or task_cls.summary
    parser = argparse.ArgumentParser(prog=f"recur train {name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    common = parser.add_argument_group("common options")
    for option in COMMON_OPTIONS:
        _add_option(common, option, defaults.get(option.name))
    if task_cls.options:
        own = parser.add_argument_group(f"{name} options")
        for option in task_cls.options:
            _add_option(own, option, defaults.get(option.name))
    return parser


def _train(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(_train_usage())
        return 0
    if not argv:
        _usage_error("recur train", "the following arguments are required: TASK",
                     usage=_train_usage())
    name, rest = argv[0], argv[1:]
    tasks = all_tasks()
    if name not in tasks:
        _usage_error("recur train", f"argument TASK: invalid choice: {name!r} "
                     f"(choose from {', '.join(tasks)})", usage=TRAIN_USAGE)
    parser = _task_parser(name)
    ns = parser.parse_args(rest)
    _setup_logging(ns.verbose)
    overrides = {k: v for k, v in vars(ns).items() if k != "verbose" and v is not None}
    main_rank = int(os.environ.get("RANK", "0")) == 0
    from ..tasks.runner import default_out, train_task

    if not overrides.get("out") and not overrides.get("resume"):
        overrides["out"] = str(default_out(name))  # known here, to say how to resume
    try:
        result = train_task(name, overrides,
                            reporter=TerminalReporter() if main_rank else Reporter())
    except RUN_ERRORS as err:  # the data or the run directory, not the command line: one line
        log.debug("train failed", exc_info=True)
        _usage_error(f"recur train {name}", str(err))
    except KeyboardInterrupt:
        if main_rank:
            print(f"\ninterrupted; the last finished epoch is saved. Continue with:\n"
                  f"  recur train {name} --out {overrides.get('out')} --resume",
                  file=sys.stderr)
        return 130
    if result.dist.is_main:
        epochs = result.history[-1]["epoch"] if result.history else 0
        world = f" x {result.dist.world_size} processes" if result.dist.enabled else ""
        print(summary_line(name, result.metrics or {},
                           [f"{epochs} epochs{world}", f"{result.seconds:.1f} s",
                            str(result.run_dir)]), flush=True)
    if result.dist.enabled:
        _exit_process(0)
    return 0


def _exit_process(status: int) -> None:
    """End a torchrun worker now, without Python's interpreter shutdown.

    torch's gloo backend keeps its worker threads after ``destroy_process_group`` (DDP keeps
    the group alive), and a worker thread may still be freeing a finished collective's tensors
    when the interpreter shuts down; such a thread needs the GIL, and Python ends threads that
    ask for it then, which aborts the process (SIGABRT, "terminate called without an active
    exception"; pytorch/pytorch#190489). It happened in about 1 run in 25-80 here. Everything
    is written and closed by now: flush the streams and the logs, then leave.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


# ---- predict ----------------------------------------------------------------------------
PREDICT_USAGE = "usage: recur predict RUN_DIR [--device {auto,cpu,cuda}] [--json] [OPTIONS]"


def _predict_parser(prog: str, task_cls: type | None = None, *,
                    for_help: bool = False) -> argparse.ArgumentParser:
    """The parser of ``recur predict RUN_DIR``: the options of every run, then those of
    ``task_cls``'s runs (``for_help``: only the options, as a section of the general help)."""
    parser = argparse.ArgumentParser(
        prog=prog, add_help=not for_help, usage=argparse.SUPPRESS if for_help else None,
        description=None if for_help or task_cls is None
        else f"Use a trained {task_cls.name!r} run.")
    if task_cls is None:
        parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                            help="where to run the model (default: auto)")
        parser.add_argument("--json", action="store_true",
                            help="print the result as one JSON line instead of a table")
        return parser
    if not for_help:
        parser = _predict_parser(prog)
    if task_cls.predict_options:
        group = parser.add_argument_group(f"options of {task_cls.name} runs")
        for option in task_cls.predict_options:
            _add_option(group, option, option.default)
    return parser


def _predict_help() -> str:
    """``recur predict --help``: every run's options and each task's own."""
    from ..tasks import Task

    about = ("Use a trained run: RUN_DIR's task decides what predict does and which options "
             "it takes (`recur predict RUN_DIR --help` shows them for one run). The result is "
             "printed as a table, or with --json as one JSON line.")
    common = _predict_parser("recur predict").format_help().split("\n\n", 1)[1].rstrip()
    parts = [PREDICT_USAGE, "", about, "", common]
    for name, task_cls in all_tasks().items():
        if task_cls.predict is Task.predict:
            parts += ["", f"{name} runs: no predict"]
        elif not task_cls.predict_options:
            doc = (task_cls.predict.__doc__ or "").strip().splitlines()
            what = doc[0].rstrip(".") if doc else ""
            parts += ["", f"{name} runs: no options" + (f" ({what[:1].lower()}{what[1:]})"
                                                       if what else "")]
        else:
            parts += ["", _predict_parser("recur predict", task_cls,
                                          for_help=True).format_help().strip()]
    return "\n".join(parts)


def _predict(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(_predict_help())
        return 0
    if not argv:
        _usage_error("recur predict", "the following arguments are required: RUN_DIR",
                     usage=PREDICT_USAGE)
    run_dir, rest = argv[0], argv[1:]
    from ..tasks.runner import predict_run
    from ..train import RunDir

    prog = f"recur predict {run_dir}"
    try:
        saved = RunDir(run_dir).read_json(RunDir.CONFIG)
        task_cls = get_task(saved.get("task", ""))
    except RUN_ERRORS as err:
        _usage_error("recur predict", str(err))
    parser = _predict_parser(prog, task_cls)
    ns = parser.parse_args(rest)
    _setup_logging(ns.verbose)
    args = {k: v for k, v in vars(ns).items() if k not in ("verbose", "device", "json")}
    try:
        _, result = predict_run(run_dir, args, device=ns.device)
    except (NotImplementedError, *RUN_ERRORS) as err:
        log.debug("predict failed", exc_info=True)
        _usage_error(prog, str(err))
    print(json.dumps(result) if ns.json else format_result(result), flush=True)
    return 0


# ---- the small commands -----------------------------------------------------------------
def _tasks() -> int:
    tasks = all_tasks()
    width = max(map(len, tasks), default=4)
    for name, task_cls in tasks.items():
        print(f"{name:<{width}}  {task_cls.summary}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..tasks.runner import eval_run

    try:
        cfg, metrics = eval_run(args.run_dir, device=args.device)
    except RUN_ERRORS as err:
        log.debug("eval failed", exc_info=True)
        _usage_error("recur eval", str(err))
    for key, value in metrics.items():
        print(f"{key}: {format_value(value)}")
    print(summary_line(cfg.task, metrics, [args.run_dir]), flush=True)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..export import export_onnx
    from ..nn import RNNBase
    from ..tasks.runner import load_run

    try:
        _, model, _, _ = load_run(args.run_dir, device="cpu")
        layers = [m for m in model.modules() if isinstance(m, RNNBase)]
        if len(layers) != 1:
            raise ValueError(f"expected the run's model to hold one recur recurrent layer, "
                             f"found {len(layers)}")
        export_onnx(layers[0].eval(), args.out)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _usage_error("recur export", str(err))
    layer = layers[0]
    print(f"exported {type(layer).__name__}({layer.input_size}, {layer.hidden_size}, "
          f"num_layers={layer.num_layers}, bidirectional={layer.bidirectional}) of "
          f"{args.run_dir} to {args.out}", flush=True)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from ..tasks.diagnose import OPTIONS, diagnose_gradients

    values = {o.name: o.check(getattr(args, o.name) if getattr(args, o.name) is not None
                              else o.default) for o in OPTIONS}
    try:
        result = diagnose_gradients(**values)
    except ValueError as err:
        _usage_error("recur diagnose gradients", str(err))
    for cell, r in result["cells"].items():
        print(f"{cell:>4}: ||dL/dh_1|| / ||dL/dh_T|| = {r['ratio']:.3g}   "
              f"spectral radius of W_hh = {r['spectral_radius']:.3g}")
    ratios = " ".join(f"{c}={r['ratio']:.3g}" for c, r in result["cells"].items())
    print(f"diagnose gradients: T={result['seq_len']} early/late gradient ratio {ratios} | "
          f"{result['out']}", flush=True)
    return 0


def _usage_error(prog: str, message: str, usage: str | None = None) -> None:
    """Exit with status 2 after ``PROG: error: MESSAGE`` on stderr, one line; ``usage`` (a
    mistake in the command line itself) is printed before it. A data or run-file error gets
    no usage: it would bury the one line that matters."""
    if usage:
        print(usage, file=sys.stderr)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recur`` console script and ``python -m recur``; returns the exit
    status (usage errors raise ``SystemExit(2)``, as argparse does)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    if verbose:
        argv = argv[1:]
    if argv and argv[0] == "train":
        return _train(argv[1:] + (["--verbose"] if verbose else []))
    if argv and argv[0] == "predict":
        return _predict(argv[1:] + (["--verbose"] if verbose else []))
    args = build_parser().parse_args(argv)
    _setup_logging(verbose or args.verbose)
    if args.command == "tasks":
        return _tasks()
    if args.command == "eval":
        return _eval(args)
    if args.command == "env":
        from .env import report

        for key, value in report().items():
            print(f"{key}: {value}")
        return 0
    if args.command == "diagnose":
        return _diagnose(args)
    if args.command == "export":
        return _export(args)
    raise AssertionError(args.command)  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
