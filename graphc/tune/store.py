"""What ``graphc tune`` keeps on disk: the search state (``tune.json``, what ``--resume`` and
``--refine`` read), the ranked results (``results.csv``, ``results.json``), ``best.yaml`` and ``tune.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..errors import GraphcError
from ..files import write_atomic
from .space import Dim, fmt_value, plain, values_text

STATE = "tune.json"
RESULT_COLUMNS = ("rank", "trial", "status", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "epochs",
                  "wall_seconds", "params", "macs", "memory_bytes", "reason", "run_dir")


def sort_key(t: dict):
    order = {"ok": 0, "failed": 1, "pending": 2, "rejected": 3}[t["status"]]
    acc = t.get("val_accuracy")
    loss = t.get("val_loss")
    return (order, -(acc if acc is not None else -1), loss if loss is not None else math.inf, t["id"])


class Search:
    """A search on disk: its state (``tune.json``) and the results written from it."""

    def __init__(self, out: Path, state: dict):
        self.out, self.state = out, state

    @property
    def trials(self) -> list[dict]:
        return self.state["trials"]

    def dims(self) -> list[Dim]:
        return [Dim.from_json(d) for d in self.state["dims"]]

    def save(self) -> None:
        write_atomic(self.out / STATE, json.dumps(self.state, indent=1, default=str) + "\n")
        self.write_results()

    # --- results -----------------------------------------------------------------------------

    def ranked(self) -> list[dict]:
        return sorted(self.trials, key=sort_key)

    def rows(self) -> list[dict]:
        rows = []
        for rank, t in enumerate(self.ranked(), 1):
            row = {"rank": rank if t["status"] == "ok" else None, "trial": t["id"], "status": t["status"]}
            row.update({f"value:{p}": v for p, v in t["values"].items()})
            for c in RESULT_COLUMNS[3:]:
                row[c] = t.get(c)
            rows.append(row)
        return rows

    def write_results(self) -> None:
        rows = self.rows()
        write_atomic(self.out / "results.json", json.dumps(rows, indent=1, default=str) + "\n")
        cols = list(rows[0]) if rows else list(RESULT_COLUMNS)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        write_atomic(self.out / "results.csv", buf.getvalue())

    def table(self, limit: int | None = None) -> str:
        paths = [d["path"] for d in self.state["dims"]]
        head = ["#", "trial", *paths, "val acc", "test acc", "epochs", "wall s", "params", "MACs", "status / reason"]
        lines = []
        for rank, t in enumerate(self.ranked(), 1):
            def pct(k):
                return f"{100 * t[k]:.2f}%" if t.get(k) is not None else "-"

            def num(k):
                return f"{t[k]:,}" if t.get(k) is not None else "-"

            status = t["status"] if t["status"] == "ok" else f"{t['status']}: {t.get('reason') or ''}"
            lines.append([str(rank) if t["status"] == "ok" else "-", t["id"], *(fmt_value(t["values"][p]) for p in paths),
                          pct("val_accuracy"), pct("test_accuracy"), num("epochs"),
                          f"{t['wall_seconds']:.2f}" if t.get("wall_seconds") is not None else "-", num("params"), num("macs"),
                          status])
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [["…"] + [""] * (len(head) - 1)]
        widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head) - 1)]
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]  # noqa: E731
        return "\n".join([fmt(head), *map(fmt, lines)])

    def best(self) -> dict | None:
        ok = [t for t in self.trials if t["status"] == "ok" and t.get("val_accuracy") is not None]
        return min(ok, key=sort_key) if ok else None

    def write_best(self) -> Path | None:
        best = self.best()
        if best is None:
            return None
        text = best_spec_text(self.state["spec"], self.state["sets"] + best["sets"],
                              f"graphc tune: best of {len(self.trials)} trials: {best['id']} "
                              f"(validation accuracy {100 * best['val_accuracy']:.2f}%) with {values_text(best['values'])}")
        write_atomic(self.out / "best.yaml", text)
        return self.out / "best.yaml"


def best_spec_text(spec: str, sets: list[str], comment: str) -> str:
    """The spec with ``sets`` applied, as YAML; relative ``include:`` files and ``train.data`` paths are
    made absolute so the file works from anywhere."""
    import yaml

    from ..spec.overrides import apply_set
    from ..spec.safe_yaml import load_yaml_file

    data = load_yaml_file(spec)
    for s in sets:
        apply_set(data, s)
    data = plain(data)
    base = Path(spec).parent
    if isinstance(data.get("include"), list):
        data["include"] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in data["include"]]
    tr = data.get("train")
    if isinstance(tr, dict) and isinstance(tr.get("data"), str) and tr["data"].endswith(".npz") and not Path(tr["data"]).is_absolute():
        tr["data"] = str((base / tr["data"]).resolve())
    return f"# {comment}\n# from {spec}\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)


def read_state(directory: str, flag: str) -> dict:
    path = Path(directory) / STATE
    if not path.is_file():
        raise GraphcError(f"{flag} {directory}: not a graphc tune directory (no {STATE})")
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphcError(f"{flag} {directory}: cannot read {STATE}: {e}") from None
    # a damaged or hand-edited file: named by file and field here, not a TypeError later
    if not isinstance(state, dict):
        raise GraphcError(f"{path}: holds {type(state).__name__}, expected an object (the search's state)",
                          hint="the file is damaged; start a new search with --out")
    for key, types, what in (("spec", str, "the spec's path"), ("sets", list, "a list of --set strings"),
                             ("dims", list, "a list of search dimensions"), ("trials", list, "a list of trials")):
        if not isinstance(state.get(key), types):
            found = "missing" if key not in state else f"{type(state[key]).__name__} {json.dumps(state[key])[:40]}"
            raise GraphcError(f"{path}: field '{key}' is {found}, expected {what}",
                              hint="the file is damaged; start a new search with --out")
    return state
