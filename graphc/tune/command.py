"""``graphc tune``: the command line of the search (graphc.tune.search)."""

from __future__ import annotations

from ..errors import GraphcError
from ..train.command import at_least_one, deprecated_alias

# the search (Dask, the trial store, plots) is imported by the handler, not here: every graphc
# command builds this subcommand's parser

TUNE_EPILOG = """exit codes: 0 the search finished (every trial trained, rejected before training, or failed with a
stated reason) · 2 invalid command line · 65 invalid spec, search space or option · 66 an input file is missing ·
70 internal error (traceback in a crash log) · 73 an output cannot be created · 74 I/O error while writing ·
130 interrupted: continue with --resume DIR"""


def _amount(text: str) -> int:
    import argparse

    from .prefilter import parse_amount

    try:
        return parse_amount(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 0.5)") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def cmd_tune(args) -> int:
    from .prefilter import Budgets
    from .search import TuneOptions, tune

    if sum(x is not None for x in (args.resume, args.refine)) > 1:
        raise GraphcError("use --resume DIR or --refine DIR, not both")
    if args.workers and args.scheduler:
        raise GraphcError("use --workers N (an embedded cluster) or --scheduler ADDRESS (an existing one), not both")
    return tune(TuneOptions(spec=args.spec, grid=args.grid or [], random=args.random or [], space=args.space,
                            trials=args.trials, seed=args.seed, sets=args.set or [],
                            budgets=Budgets(args.max_params, args.max_macs, getattr(args, "max_trial_memory", None)), workers=args.workers,
                            scheduler=args.scheduler, out=args.out, resume=args.resume, refine=args.refine, top=args.top,
                            retries=args.retries, backend=args.backend, progress_every=args.progress_every))


def add_subcommand(sub, epilog: str) -> None:
    """Add ``graphc tune`` to the CLI's subparsers."""
    from ..ir.memory import size_argument

    t = sub.add_parser(
        "tune", help="hyperparameter search on Dask: grid/random over any spec value, invalid candidates rejected "
                     "before training", epilog=TUNE_EPILOG,
        description="Search over spec values named by --set's dotted paths. Every candidate is compiled first; one "
                    "whose shapes fail or that exceeds --max-params/--max-macs/--max-trial-memory is rejected with the "
                    "values, the layer and the message. The others train in parallel on Dask (an embedded "
                    "LocalCluster, or --scheduler). Writes DIR/tune.json, results.csv, results.json (sorted by "
                    "validation accuracy), best.yaml (a complete spec for graphc train), tune.png and trials/<id>/.")
    t.add_argument("spec", nargs="?", help="the spec file (YAML) with a train: section")
    t.add_argument("--grid", action="append", metavar="PATH=V1,V2,...",
                   help="grid dimension (repeatable; dimensions are crossed): --grid layers.fc1.units=50,100,200")
    t.add_argument("--random", action="append", metavar="PATH=DIST",
                   help="random dimension (repeatable): uniform(a,b), loguniform(a,b), int(a,b) (both ends included) or "
                        "choice(a,b,...): --random train.lr=loguniform(1e-4,1e-1)")
    t.add_argument("--space", metavar="FILE",
                   help="a YAML search space: tune: {grid: {PATH: [values]}, random: {PATH: 'loguniform(a,b)'}, "
                        "trials: N, seed: S} (combined with --grid/--random)")
    t.add_argument("--trials", type=at_least_one, metavar="N",
                   help="random draws per grid point (default 8; the grid alone runs once per point)")
    t.add_argument("--seed", type=int, metavar="S", help="seed of the random draws (default 0)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a fixed override for every trial, as graphc train --set (repeatable): --set train.epochs=20")
    t.add_argument("--max-params", type=_amount, metavar="N", help="reject candidates with more parameters (e.g. 500k, 2M)")
    t.add_argument("--max-macs", type=_amount, metavar="N", help="reject candidates with more MACs per example (e.g. 10M)")
    t.add_argument("--max-trial-memory", type=size_argument, metavar="SIZE",
                   help="reject candidates whose estimated training memory, params×4 + activation bytes per example × "
                        "train.batch_size, exceeds SIZE (4GiB, 512MiB, 8GB or bytes, as --max-memory elsewhere): a "
                        "search budget like --max-params, not the run limit that the other commands' --max-memory is")
    # the former name, whose amounts were decimal for k/M/G and binary for kB/MB/GB
    deprecated_alias(t, "--max-memory", "--max-trial-memory", type=_amount,
                     why="--max-memory is the run limit of run, grad, check-grad, train and export")
    t.add_argument("--workers", type=at_least_one, metavar="N",
                   help="worker processes of the embedded LocalCluster (default: one per CPU), one thread each")
    t.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="use an existing Dask cluster (started with 'dask scheduler' and 'dask worker ADDRESS'); the spec "
                        "and the output directory must be at the same paths on every worker (a shared filesystem)")
    t.add_argument("--out", metavar="DIR", help="the output directory (default: runs/tune-<spec name>, numbered if taken)")
    t.add_argument("--resume", metavar="DIR", help="continue the search in DIR: finished and rejected trials are kept, "
                                                   "the rest (unfinished or failed) are trained")
    t.add_argument("--refine", metavar="DIR", help="coarse to fine: a new search around the --top best trials of DIR "
                                                   "(numeric ranges narrowed, log-uniform ones in log space)")
    t.add_argument("--top", type=at_least_one, default=3, metavar="K", help="trials that --refine narrows around (default 3)")
    t.add_argument("--retries", type=int, default=2, metavar="N",
                   help="resubmissions of a trial whose task raised (default 2); a trial whose worker died is "
                        "rescheduled by Dask up to distributed.scheduler.allowed-failures times")
    t.add_argument("--backend", choices=("numpy", "onnxruntime"), default=None,
                   help="train every trial on graphc's NumPy interpreter (default) or on onnxruntime (the exported "
                        "training step; faster on convolutional nets); kept by --resume")
    t.add_argument("--progress-every", type=_seconds, default=1.0, metavar="SECONDS",
                   help="how often the progress line reads the running trials' epochs (default 1 s); on a terminal it "
                        "is rewritten in place, in a log a changed line is written at most every 10 s (or SECONDS, if longer)")
    t.set_defaults(run=cmd_tune)
