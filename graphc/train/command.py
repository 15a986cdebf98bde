"""``graphc train``: the command line of the training loop (graphc.train.loop), and the option types and
deprecated aliases that the commands above it (tune, export) share."""

from __future__ import annotations

import argparse
import sys

TRAIN_EPILOG = """exit codes: 0 success · 2 invalid command line · 3 a numerical check failed: a non-finite loss
stopped the run (the last good checkpoint is kept), or --overfit K did not reach 100 % training accuracy · 65 invalid
spec, data or option (messages name file:line:col) · 66 an input file is missing · 70 internal error (traceback in a
crash log) · 73 an output cannot be created (another process holds the run directory) · 74 I/O error while writing ·
130 interrupted (Ctrl-C or SIGTERM): a checkpoint was written, continue with --resume RUN_DIR"""


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be ≥ 0")
    return value


class _DeprecatedAlias(argparse.Action):
    """An old option name kept working: stores into the new option's dest and says so on stderr."""

    def __init__(self, option_strings, dest, new: str, why: str = "the spec's name for the setting", **kwargs):
        self.new, self.why = new, why
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"graphc: warning: {option_string} is deprecated, use {self.new} ({self.why})", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(p, old: str, new: str, **kwargs) -> None:
    """Keep ``old`` as a warning alias of ``new`` (one name per setting across the spec and the CLI);
    ``why`` (optional) is the reason the warning gives."""
    p.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=_DeprecatedAlias, new=new, default=argparse.SUPPRESS,
                   metavar=new.lstrip("-").upper(), help=f"deprecated alias of {new}", **kwargs)


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return value


def cmd_train(args) -> int:
    from ..errors import GraphcError
    from .loop import Options, train

    if args.spec is None and args.resume is None:
        raise GraphcError("graphc train needs a SPEC (or --resume RUN_DIR)")
    return train(Options(spec=args.spec, out=args.out, backend=args.backend, device=args.device, sets=args.set or [],
                         overfit=args.overfit, resume=args.resume, checkpoint_every=args.checkpoint_every or 0,
                         params=args.params, log_format=args.log_format, max_memory=args.max_memory,
                         allow_nonfinite=args.allow_nonfinite))


def add_subcommand(sub, epilog: str) -> None:
    """Add ``graphc train`` to the CLI's subparsers."""
    t = sub.add_parser(
        "train", help="train a spec (its train: section) on the digits or an .npz, with checkpoints", epilog=TRAIN_EPILOG,
        description="Train SPEC with the optimiser, schedule and data of its 'train:' section (every key can be overridden with "
                    "--set) on the NumPy interpreter or onnxruntime. Writes RUN_DIR/metrics.csv, metrics.json, curves.png, "
                    "best.npz (the best epoch on the monitored validation metric; use it with run/export --params), "
                    "final.npz, normalization.npz and checkpoints/ (the two newest; at the end of every epoch, every "
                    "--checkpoint-every steps and on Ctrl-C). A progress bar is shown when stderr is a terminal.")
    t.add_argument("spec", nargs="?", help="the spec file (YAML); with --resume, defaults to the run's spec")
    t.add_argument("--backend", choices=("numpy", "onnxruntime"), default=None,
                   help="graphc's NumPy interpreter (default) or the exported training step on onnxruntime")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="onnxruntime device: CUDA when its provider loads (auto, the default), or force one")
    t.add_argument("--out", metavar="RUN_DIR", help="the run directory (default: runs/<spec name>, numbered if taken)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec value by dotted path, the value read as YAML (repeatable): --set train.lr=3e-4 "
                        "--set train.lr_decay.kind=step --set layers.fc1.units=200")
    t.add_argument("--overfit", type=at_least_one, metavar="K",
                   help="the course's first check: train on K training examples only (no L2, no validation) until 100%% "
                        "training accuracy or train.overfit_epochs; exit 3 if it is not reached")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest usable checkpoint, exactly as if never stopped; a finished "
                        "run continues with --set train.epochs=MORE (train.lr_decay may change too); refused if anything "
                        "else in the spec (or a --set value) changed")
    t.add_argument("--params", metavar="RUN_DIR|P.npz",
                   help="fine-tune: start from these trained weights (a run directory's best.npz, or a parameter file) "
                        "instead of the initialisers; shapes must match the spec; recorded in run.json with a SHA-256")
    t.add_argument("--checkpoint-every", type=non_negative, metavar="N",
                   help="also write a checkpoint every N optimiser steps (batches); default: at the end of every epoch only")
    t.add_argument("--log-format", choices=("text", "jsonl"), default="text",
                   help="text (default): epoch lines and a progress bar (examples/s, ETA of the epoch and the run) on "
                        "stderr, a summary on stdout; jsonl: stdout is one strict JSON object per line — "
                        "{\"event\": \"step\", …} per optimiser step, {\"event\": \"epoch\", …} per epoch (the "
                        "metrics.csv row), {\"event\": \"end\", …} with the summary")
    from ..ir.memory import MAX_MEMORY_HELP, size_argument

    t.add_argument("--max-memory", type=size_argument, metavar="SIZE", help=MAX_MEMORY_HELP + "; checked for one training "
                   "step at train.batch_size and one evaluation batch at train.eval_batch_size")
    t.add_argument("--allow-nonfinite", action="store_true",
                   help="accept NaN/Inf in the training and test arrays (refused by default, naming the array and the first bad index)")
    t.set_defaults(run=cmd_train)
