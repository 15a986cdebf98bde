"""The ``graphc`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import EXIT_CODES_HELP, Diagnostic, GraphcError
from .files import write_atomic
from .version import __version__

EPILOG = EXIT_CODES_HELP
SPEC_HELP = "the spec file (YAML), or an ONNX model (.onnx), imported in memory with its parameters"


def _refuse_overwriting_inputs(args, **outputs) -> None:
    """Before anything runs: no output may be one of the command's inputs (exit 73)."""
    from .files import check_outputs

    params = getattr(args, "params", None)
    if params:
        from .train.loop import run_params  # the training loop (and the backends) only when --params names a run

        params = run_params(params)
    inputs = {"SPEC": args.spec, "--inputs": getattr(args, "inputs", None), "--params": params}
    check_outputs({flag: getattr(args, attr) for flag, attr in outputs.items()}, inputs)


def _emit(text: str, out: str | None) -> None:
    if out:
        write_atomic(out, text + "\n")
    else:
        print(text)


def _levels(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of levels (0, 1, 2, …)")
    return int(text)


def compile_spec(path, sizes: dict[str, int] | None = None):
    """The forward graph of SPEC: a spec file, or an ONNX model imported in memory with its parameters;
    ``sizes``: ``compile --size``."""
    from .onnx_import import compile_source

    return compile_source(path, sizes=sizes)


def cmd_import(args) -> int:
    from pathlib import Path

    from .files import check_outputs, save_arrays
    from .onnx_import import import_file
    from .report import compile_report

    out = Path(args.output)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise GraphcError(f"-o {out}: the spec must be a .yaml file (its parameters go beside it, in {out.with_suffix('.npz').name})")
    npz = out.with_suffix(".npz")
    check_outputs({"-o": out, "parameters": npz}, {"MODEL": args.model})
    imported = import_file(args.model, params_file=npz.name)
    graph = imported.graph()  # the spec compiles before anything is written
    if imported.params:
        save_arrays(npz, imported.params)
    write_atomic(out, imported.text)
    report = compile_report(graph)
    print(f"wrote {out} ({len(imported.spec['layers'])} layers) and {npz if imported.params else 'no parameters'}: "
          f"{report['params_total']:,} parameters, {report['macs_total']:,} MACs per example", file=sys.stderr)
    return 0


def cmd_compile(args) -> int:
    from .ir.analysis import warnings
    from .report import compile_report, format_table

    _refuse_overwriting_inputs(args, **{"-o": "output"})
    graph = compile_spec(args.spec, sizes=args.size)
    if args.params:
        graph, _ = _model(graph, args)
    if args.backward:
        from .ir.autodiff import training_graph
        from .ir.passes import optimize
        from .report import backward_report, format_backward

        training, log = optimize(training_graph(graph))
        if args.passes:
            for name, changes in log.items():
                print(f"{name}: {len(changes)} change(s)", file=sys.stderr)
                for change in changes:
                    print(f"  {change}", file=sys.stderr)
        report = backward_report(training, compile_report(graph, expand=args.expand, depth=args.depth))
        _emit(finite_dumps(report, indent=2) if args.json else format_backward(report), args.output)
        return 0
    found = warnings(graph)
    if args.strict and found:
        raise GraphcError([Diagnostic(w.message, w.loc, "--strict turns warnings into errors") for w in found])
    report = compile_report(graph, expand=args.expand, depth=args.depth)
    for w in found:
        print(str(w) if w.loc else f"graphc: {w}", file=sys.stderr)
    _emit(finite_dumps(report, indent=2) if args.json else format_table(report), args.output)
    return 0


def _size_bindings(text: str) -> dict[str, int]:
    """``--size H=224,W=224``: names of the spec's symbolic sizes bound to positive ints."""
    out = {}
    for item in text.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"'{item}' is not NAME=SIZE with a positive integer size (as in H=224,W=224)")
        out[name.strip()] = int(value)
    return out


def _params_fit(graph, args, what: str) -> None:
    """The parameters alone (created or read before the inputs are) must fit in ``--max-memory``."""
    from .ir.memory import require_memory

    require_memory(graph, {}, _max_memory(args), what, targets=set(graph.graph["outputs"].values()))


def _model(graph, args):
    """(the forward graph, parameters): ``--params RUN_DIR`` adds the run's input normalisation as nodes."""
    from .backends.trained import trained_model

    graph, params, note = trained_model(graph, getattr(args, "params", None), getattr(args, "seed", 0))
    if note:
        print(f"graphc: {note}", file=sys.stderr)
    return graph, params


def _max_memory(args) -> int:
    from .ir.memory import default_max_memory

    return args.max_memory if args.max_memory is not None else default_max_memory()


def _memory_check(graph, args, what: str, float_bytes: int | None = None, targets=None):
    """A ``before_reading`` for :func:`~graphc.backends.run.load_inputs`: the run's estimated peak
    memory at the batch the inputs' headers bind, against ``--max-memory``."""
    from .ir.memory import require_memory

    return lambda sizes: require_memory(graph, sizes, _max_memory(args), what, float_bytes, targets=targets)


def _float_bytes(args) -> int | None:
    return 8 if getattr(args, "float64", False) else None


def finite_dumps(value, **kwargs) -> str:
    """Every JSON graphc prints is strict (``null`` for a non-finite number): :func:`graphc.finite.dumps`."""
    from .finite import dumps

    return dumps(value, **kwargs)


def _choose_backend(args) -> None:
    """``args.backend`` set to the engine that honours ``--device`` (engines.choose_backend); the NumPy
    interpreter says so at once (onnxruntime once its session has chosen a provider)."""
    from .backends.engines import choose_backend, engine_line

    args.backend = choose_backend(args.backend, args.device)
    if args.backend == "numpy":
        print(engine_line("numpy", "NumPy interpreter on the CPU", args.device), file=sys.stderr)


def _check_finite(args, inputs: dict) -> None:
    """NaN/Inf in --inputs are refused unless --allow-nonfinite."""
    if not getattr(args, "allow_nonfinite", False):
        from .finite import require_finite

        require_finite(inputs, "--inputs")


def _warn_nonfinite(arrays: dict, what: str) -> None:
    """Results holding NaN or ±Inf: one warning line, in place of NumPy's floating-point warnings
    (which the numpy backend's runs silence: they name graphc's source lines, not the cause)."""
    from .finite import nonfinite_results

    message = nonfinite_results(arrays, what)
    if message:
        hint = "the computation overflowed or left an op's domain: check the inputs' scale and the parameters (--float64 runs the numpy backend in double precision)"
        print(f"graphc: {Diagnostic(message, hint=hint, severity='warning')}", file=sys.stderr)


def _quiet_floats():
    """NumPy's floating-point warnings off (overflow, invalid, division by zero): a run's non-finite
    results are reported by :func:`_warn_nonfinite` instead."""
    import numpy as np

    return np.errstate(all="ignore")


def cmd_run(args) -> int:
    from .backends.engines import engine_line
    from .backends.run import bind_sizes, load_inputs, run_forward
    from .files import save_arrays
    from .onnx_import import is_onnx_file

    _refuse_overwriting_inputs(args, **{"--out": "out", "--save-params": "save_params"})
    if is_onnx_file(args.spec) and args.backend != "numpy":
        return _run_onnx_file(args)  # the model as it is, on onnxruntime; --backend numpy imports it
    graph = compile_spec(args.spec)
    _choose_backend(args)
    _params_fit(graph, args, "run")
    graph, params = _model(graph, args)
    graph = bind_sizes(graph, args.inputs)
    inputs = load_inputs(graph, args.inputs, _memory_check(graph, args, "run", _float_bytes(args), set(graph.graph["outputs"].values())))
    _check_finite(args, inputs)
    if args.backend == "onnxruntime":
        from .backends.run import run_forward_ort

        outputs, provider = run_forward_ort(graph, inputs, params, args.device)
        print(engine_line("onnxruntime", provider, args.device), file=sys.stderr)
    else:
        with _quiet_floats():
            outputs = run_forward(graph, inputs, params, np_dtype(args))
    if args.save_params:
        save_arrays(args.save_params, params)
    save_arrays(args.out, outputs)
    for name, value in outputs.items():
        print(f"{name}: {value.dtype} {tuple(value.shape)}", file=sys.stderr)
    _warn_nonfinite(outputs, "output")
    return 0


def cmd_grad(args) -> int:
    from .backends.engines import engine_line
    from .backends.run import bind_sizes, load_inputs, run_training_step
    from .files import save_arrays
    from .ir.autodiff import training_graph
    from .ir.passes import optimize

    _refuse_overwriting_inputs(args, **{"--out": "out"})
    graph = compile_spec(args.spec)
    _params_fit(graph, args, "grad")
    graph, params = _model(graph, args)
    graph = bind_sizes(graph, args.inputs)  # the gradient ops hold sizes: bound before differentiating
    training, _ = optimize(training_graph(graph))
    _choose_backend(args)
    inputs = load_inputs(training, args.inputs, _memory_check(training, args, "grad", _float_bytes(args)))
    _check_finite(args, inputs)
    if args.backend == "onnxruntime":
        from .backends.run import run_training_step_ort

        (loss, grads, _), provider = run_training_step_ort(training, inputs, params, args.seed, args.device)
        print(engine_line("onnxruntime", provider, args.device), file=sys.stderr)
    else:
        with _quiet_floats():
            loss, grads, _ = run_training_step(training, inputs, params, args.seed, np_dtype(args))
    results = {"loss": loss, **{f"grad/{p}": g for p, g in grads.items()}}
    save_arrays(args.out, results)
    print(f"loss: {float(loss):.6g}", file=sys.stderr)
    _warn_nonfinite(results, "result")
    return 0


def cmd_check_grad(args) -> int:
    import networkx as nx

    from .errors import EXIT_CHECK_FAILED
    from .gradcheck import check_spec
    from .ir.autodiff import training_graph
    from .ir.memory import require_memory

    graph = compile_spec(args.spec, sizes=args.size)
    _params_fit(graph, args, "check-grad")
    graph, params = _model(graph, args)
    training = training_graph(graph)
    symbols = {d for a in training.nodes.values() for d in a["type"].shape if isinstance(d, str)}
    # the check keeps every forward value (to freeze kinks and re-run from) and every gradient, in float64
    kept = nx.ancestors(training, training.graph["loss"]) | {training.graph["loss"]} | set(training.graph["grads"].values())
    require_memory(training, dict.fromkeys(symbols, args.batch), _max_memory(args), f"check-grad --batch {args.batch}", 8, targets=kept)
    results = check_spec(graph, batch=args.batch, seed=args.seed, directions=args.directions, wrt=args.wrt, params=params)
    worst = max((r.max_rel_error for r in results), default=0.0)
    ok = worst <= args.tolerance
    if args.json:
        print(finite_dumps({"max_rel_error": worst, "tolerance": args.tolerance, "ok": ok, "wrt": args.wrt,
                          "params": {r.name: {"max_rel_error": r.max_rel_error, "max_abs_error": r.max_abs_error, "checked": r.checked,
                                              "reaches_loss": r.reaches_loss}
                                     for r in results}}, indent=2))
    else:
        width = max((len(r.name) for r in results), default=10)
        for r in results:
            if not r.reaches_loss:
                print(f"{r.name:<{width}}  zero gradient: the loss does not depend on it"
                      + ("" if r.max_abs_error == 0 else f"  > but the symbolic gradient is {r.max_abs_error:.2e}"))
                continue
            print(f"{r.name:<{width}}  {r.max_rel_error:.2e}{'' if r.max_rel_error <= args.tolerance else '  > tolerance'}")
        print(f"max relative error {worst:.2e} ({'ok' if ok else 'FAILED'}: tolerance {args.tolerance:g})")
    return 0 if ok else EXIT_CHECK_FAILED


def _check_onnx_input_headers(sess, args) -> None:
    """The ``--inputs`` of ``run MODEL.onnx`` checked from their ``.npy`` headers before any array is
    read or inflated: each of the model's inputs keeps its rank, its static sizes and its element
    kind, and all of them together fit in ``--max-memory``."""
    import math

    from .files import array_headers
    from .ir.memory import format_bytes

    headers = array_headers(args.inputs, "--inputs")
    kinds = {"tensor(float)": "f", "tensor(double)": "f", "tensor(float16)": "f", "tensor(int64)": "iu", "tensor(int32)": "iu"}
    errors = []
    for i in sess.get_inputs():
        if i.name not in headers:
            continue
        shape, dtype = headers[i.name]
        want = tuple(d if isinstance(d, int) else (d or "?") for d in i.shape)
        if len(shape) != len(want) or any(isinstance(w, int) and w != g for g, w in zip(shape, want)):
            errors.append(f"--inputs: '{i.name}' has shape {shape}, the model declares ({', '.join(map(str, want))})")
        elif i.type in kinds and dtype.kind not in kinds[i.type]:
            errors.append(f"--inputs: '{i.name}' has dtype {dtype}, the model declares {i.type}")
    if errors:
        raise GraphcError([Diagnostic(e) for e in errors])
    need = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
    if need > _max_memory(args):
        raise GraphcError(f"--inputs holds {format_bytes(need)} ({need:,} bytes) of arrays, more than --max-memory "
                          f"{format_bytes(_max_memory(args))}", hint="use smaller inputs, or raise --max-memory")


def _run_onnx_file(args) -> int:
    """``graphc run MODEL.onnx``: any ONNX model on onnxruntime, inputs by name from the .npz."""
    from .backends.engines import engine_line
    from .backends.ort import load_onnx, run, session
    from .files import load_arrays, save_arrays

    model = load_onnx(args.spec)
    sess, provider = session(model, args.device)
    _check_onnx_input_headers(sess, args)
    inputs = load_arrays(args.inputs, "--inputs")
    _check_finite(args, inputs)
    declared = {i.name for i in sess.get_inputs()}
    missing = sorted(declared - set(inputs) - {t.name for t in model.graph.initializer})
    if missing:
        raise GraphcError(f"--inputs lacks {', '.join(missing)} (the model's inputs: {', '.join(sorted(declared))})")
    outputs = run(sess, inputs)
    save_arrays(args.out, outputs)
    print(engine_line("onnxruntime", provider, args.device), file=sys.stderr)
    _warn_nonfinite(outputs, "output")
    return 0


def cmd_export(args) -> int:
    from .backends.onnx_export import forward_model, save_model, training_model

    _refuse_overwriting_inputs(args, **{"-o": "output"})
    if args.no_grads and not (args.training and args.optimizer):
        raise GraphcError("--no-grads leaves out a training step's grad/<param> outputs, and is only for a step with an update",
                          hint="add --training --optimizer KIND, or drop --no-grads")
    graph = compile_spec(args.spec)
    params = None
    if args.params or not args.no_params:
        from .ir.memory import require_memory

        # the arrays, the model's copy of them and its serialised bytes
        require_memory(graph, {}, _max_memory(args), "export with parameters embedded", factor=3, targets=set(graph.graph["outputs"].values()))
        graph, params = _model(graph, args)
    if args.static_batch is not None:
        from .ir.graph import with_static_batch

        graph = with_static_batch(graph, args.static_batch)
    if args.training:
        from .ir.autodiff import training_graph
        from .ir.passes import optimize
        from .train.optimizers import Hyper, with_optimizer

        training, _ = optimize(training_graph(graph))
        if args.optimizer:
            training = with_optimizer(training, args.optimizer, Hyper(momentum=args.momentum, rho=args.rho, beta1=args.beta1,
                                                                        beta2=args.beta2, eps=args.eps), grads=not args.no_grads)
        model = training_model(training, params)
    else:
        model = forward_model(graph, params)
    import onnx

    onnx.checker.check_model(model, full_check=True)
    save_model(model, args.output)
    from .report import format_model_inputs, model_inputs

    kinds = sorted({n.op_type for n in model.graph.node})
    rows = model_inputs(model, graph, training.graph.get("masks", {}) if args.training else ())
    print(f"wrote {args.output}: {len(model.graph.node)} nodes ({', '.join(kinds)}), opset {model.opset_import[0].version}, "
          f"{len(rows)} inputs, {len(model.graph.output)} outputs:\n{format_model_inputs(rows)}", file=sys.stderr)
    return 0


def np_dtype(args):
    import numpy as np

    return np.float64 if getattr(args, "float64", False) else np.float32


def cmd_schema(args) -> int:
    from .spec.schema import json_schema

    _emit(finite_dumps(json_schema(), indent=2), args.output)
    return 0


def cmd_ops(args) -> int:
    from .spec.op_docs import op_page, ops_list

    print(op_page(args.kind) if args.kind else ops_list())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return value


def _batch_size(text: str) -> int:
    """A batch size: 1 to the largest dim a spec may declare."""
    from .spec.models import MAX_DIM

    value = _positive(text)
    if value > MAX_DIM:
        raise argparse.ArgumentTypeError(f"must be ≤ {MAX_DIM} (the largest dim a spec may declare)")
    return value


def memory_option(p) -> None:
    from .ir.memory import MAX_MEMORY_HELP, size_argument

    p.add_argument("--max-memory", type=size_argument, metavar="SIZE", help=MAX_MEMORY_HELP)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphc",
        description="graphc compiles neural-network architectures written as YAML: it validates a spec, "
                    "builds its graph and reports every shape, parameter count, cost and receptive field.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="validate a spec and print its per-layer report",
                       description="Validate SPEC, build its graph and print one row per layer: op, output shape, "
                                   "parameters, MACs, receptive field and inputs, then totals.", epilog=EPILOG)
    c.add_argument("spec", help=SPEC_HELP)
    c.add_argument("--json", action="store_true", help="print the report as one JSON object (see README: 'compile --json')")
    c.add_argument("--expand", action="store_true", help="one row per layer inside block instances and repeats")
    c.add_argument("--depth", type=_levels, default=0, metavar="N",
                   help="open the outermost N levels of block instances into rows of their own (default 0; --expand: all)")
    c.add_argument("--strict", action="store_true", help="treat warnings (such as windows that do not tile) as errors")
    c.add_argument("--backward", action="store_true", help="show the training graph: forward, loss and backward nodes")
    c.add_argument("--passes", action="store_true", help="with --backward: print what constant folding, CSE and dead-code elimination changed")
    c.add_argument("--params", metavar="RUN_DIR|P.npz",
                   help="report the trained model: a run directory's input normalisation becomes the first layer")
    c.add_argument("--size", type=_size_bindings, metavar="H=224,W=224",
                   help="bind the inputs' symbolic sizes (an input [N, 3, H, W]): the report is the one of those sizes")
    c.add_argument("-o", "--output", help="write the report to this file instead of standard output")
    c.set_defaults(run=cmd_compile)

    def run_options(p, out_help):
        p.add_argument("spec", help=SPEC_HELP)
        p.add_argument("--inputs", required=True, metavar="IN.npz", help="one array per spec input, by input name (.npz; pickles are refused)")
        p.add_argument("--params", metavar="RUN_DIR|P.npz",
                       help="parameter values by name (<layer>.<param>); missing ones come from the spec's initialisers. "
                            "A training run directory (its best.npz) also brings the run's input normalisation")
        p.add_argument("--seed", type=int, default=0, help="seed of the initialisers and dropout masks (default 0)")
        p.add_argument("--float64", action="store_true", help="compute in float64 instead of float32 (numpy backend)")
        p.add_argument("--backend", choices=("numpy", "onnxruntime"), default=None,
                       help="graphc's NumPy interpreter (default) or the exported ONNX model on onnxruntime")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto (default): the backend's device, onnxruntime on CUDA when its provider loads; cuda: "
                            "onnxruntime on the GPU (selected when --backend is not given), an error naming what is "
                            "missing if CUDA does not load; cpu. The first line on stderr names the engine and provider")
        p.add_argument("--out", required=True, metavar="OUT.npz", help=out_help)
        p.add_argument("--allow-nonfinite", action="store_true",
                       help="accept NaN/Inf in --inputs (refused by default, naming the array and the first bad index)")
        memory_option(p)

    r = sub.add_parser("run", help="run the forward graph (NumPy interpreter or onnxruntime)", epilog=EPILOG,
                       description="Run the spec's forward graph (inference mode: dropout off, batchnorm on running statistics). "
                                   "SPEC may also be an .onnx model, which runs on onnxruntime.")
    run_options(r, "where to write the outputs: one array per spec output, by output name")
    r.add_argument("--save-params", metavar="P.npz", help="also write the parameters used (initialised ones included)")
    r.set_defaults(run=cmd_run)

    gr = sub.add_parser("grad", help="run the training graph: the loss and every parameter's gradient", epilog=EPILOG,
                        description="Run forward + loss + backward on one batch (training mode: dropout masks from --seed, "
                                    "batchnorm on batch statistics).")
    run_options(gr, "where to write 'loss' and one array 'grad/<param>' per trainable parameter")
    gr.set_defaults(run=cmd_grad)

    k = sub.add_parser("check-grad", help="compare symbolic gradients with float64 central differences", epilog=EPILOG,
                       description="Check every trainable parameter's (and with --wrt, float input's) symbolic gradient "
                                   "against float64 central differences along random directions, on a random batch. A "
                                   "parameter the loss does not depend on (a layer feeding only another output) is "
                                   "reported as a zero gradient. Exits 3 above the tolerance.")
    k.add_argument("spec", help=SPEC_HELP)
    k.add_argument("--json", action="store_true", help="print {max_rel_error, tolerance, ok, params: {name: {...}}}")
    k.add_argument("--batch", type=_positive, default=1, help="size of the random batch (default 1)")
    k.add_argument("--directions", type=int, default=2, help="random directions per parameter (default 2)")
    k.add_argument("--seed", type=int, default=0, help="seed of the random batch, the directions, the dropout masks and "
                                                        "the initialisers of parameters --params does not give (default 0)")
    k.add_argument("--params", metavar="RUN_DIR|P.npz",
                   help="check at these parameter values, by name (<layer>.<param>); missing ones come from the spec's "
                        "initialisers. A training run directory (its best.npz) also brings the run's input normalisation")
    k.add_argument("--size", type=_size_bindings, metavar="H=32,W=32",
                   help="bind the inputs' symbolic sizes (an input [N, 3, H, W]), which differentiating needs; "
                        "the batch N is --batch")
    k.add_argument("--tolerance", type=float, default=1e-6, help="largest accepted relative error (default 1e-6)")
    k.add_argument("--wrt", choices=("params", "inputs", "all"), default="params",
                   help="check the gradient with respect to the trainable parameters (default), the float inputs, or both")
    memory_option(k)
    k.set_defaults(run=cmd_check_grad)

    e = sub.add_parser("export", help="write the forward graph or a whole training step as ONNX", epilog=EPILOG,
                       description="Export SPEC as a standard ONNX model (default-domain ops only, opset 21) that stock "
                                   "onnxruntime runs. Without --training: the forward graph, parameters embedded. With "
                                   "--training: one training step — inputs data, labels, dropout masks (<layer>.mask), "
                                   "parameters (with their values as defaults) and, with --optimizer, lr and state/…; "
                                   "outputs loss, grad/<param> and new/<param>, new/state/….")
    e.add_argument("spec", help=SPEC_HELP)
    e.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="where to write the model (atomically)")
    e.add_argument("--training", action="store_true", help="export forward + loss + backward (+ optimizer update)")
    e.add_argument("--optimizer", choices=("sgd", "momentum", "nesterov", "rmsprop", "adam"),
                   help="with --training: add the update, so one session call is one training step")
    e.add_argument("--no-grads", action="store_true",
                   help="with --optimizer: no grad/<param> outputs (the step returns loss and the new values only); "
                        "an SGD or momentum update of a dense weight then runs as one Gemm of its gradient's operands")
    e.add_argument("--momentum", type=float, default=0.9, help="momentum/nesterov μ (default 0.9)")
    e.add_argument("--rho", type=float, default=0.99, help="rmsprop ρ (default 0.99; the spec's train.rho)")
    from .train.command import deprecated_alias

    deprecated_alias(e, "--decay", "--rho", type=float)
    e.add_argument("--beta1", type=float, default=0.9, help="adam β₁ (default 0.9)")
    e.add_argument("--beta2", type=float, default=0.999, help="adam β₂ (default 0.999)")
    e.add_argument("--eps", type=float, default=1e-8, help="rmsprop/adam ε (default 1e-8)")
    e.add_argument("--params", metavar="RUN_DIR|P.npz",
                   help="parameter values to embed (missing ones: the spec's initialisers); a training run directory "
                        "also brings its input normalisation, so the model takes raw inputs")
    e.add_argument("--seed", type=int, default=0, help="seed of the initialisers (default 0)")
    e.add_argument("--no-params", action="store_true", help="embed no parameter values: parameters are plain inputs")
    e.add_argument("--static-batch", type=_batch_size, metavar="N",
                   help="fix the batch (the inputs' symbolic leading dim) to N: every shape is static and all shape "
                        "arithmetic is folded into constants; the model then takes batches of N only "
                        "(default: the batch stays symbolic)")
    memory_option(e)
    e.set_defaults(run=cmd_export)

    im = sub.add_parser("import", help="turn an ONNX model into a spec (OUT.yaml) and its parameters (OUT.npz)", epilog=EPILOG,
                        description="Import MODEL.onnx: write OUT.yaml, a spec with one layer per ONNX node or idiom (Conv + "
                                    "bias as conv2d, MatMul/Gemm + Add as dense, BatchNormalization with its running "
                                    "statistics, Clip(0, 6) as relu6, PyTorch's GELU and LayerNorm as one layer each, "
                                    "flatten patterns as flatten; constant subgraphs folded), layers named after the "
                                    "nodes, and OUT.npz, the parameters by graphc name, which the spec's 'params:' "
                                    "names. Every node graphc cannot take is reported (exit 65); nothing is written then.")
    im.add_argument("model", metavar="MODEL.onnx", help="the ONNX model (external data must lie in its directory)")
    im.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="the spec to write; OUT.npz is written beside it")
    im.set_defaults(run=cmd_import)

    s = sub.add_parser("schema", help="print the JSON Schema of the spec language (for editors)")
    s.add_argument("-o", "--output", help="write the schema to this file")
    s.set_defaults(run=cmd_schema)

    o = sub.add_parser("ops", help="list the ops a spec can use; 'ops KIND' documents one", epilog=EPILOG,
                       description="Without KIND: every layer and loss with a one-sentence summary. With KIND: its "
                                   "formula, every attribute (type, default, bound), inputs, parameters and an example line.")
    o.add_argument("kind", nargs="?", metavar="KIND", help="an op kind, such as conv2d")
    o.set_defaults(run=cmd_ops)

    from . import viz
    from .train import command as training  # each adds its own subcommand
    from .tune import command as tune

    training.add_subcommand(sub, EPILOG)
    tune.add_subcommand(sub, EPILOG)
    viz.add_subcommand(sub, EPILOG)
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import run_guarded

    args = parser().parse_args(argv)
    return run_guarded(lambda: args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
