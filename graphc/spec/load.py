"""Reading a spec: safe YAML, structural validation, includes. All errors of a stage are reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import Diagnostic, GraphcError
from ..gc_pause import without_gc
from .diagnostics import diagnostics_from
from .models import Library, Spec
from .safe_yaml import LDict, load_yaml_file, load_yaml_text, loc_of

MAX_INCLUDE_DEPTH = 16


@dataclass
class LoadedSpec:
    """A structurally valid spec: its raw data (with positions), the model, and every block by name."""

    path: str
    data: LDict
    spec: Spec | None
    blocks: dict[str, LDict]
    #: structural errors outside the layers (a bad input dtype, say): the layers are still checked,
    #: so that one run reports everything, but the spec is not built
    errors: list[Diagnostic]

    @property
    def name(self) -> str:
        return self.spec.name or Path(self.path).stem


def _validate(data, model, what: str, errors: list[Diagnostic]):
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else type(data).__name__
        errors.append(Diagnostic(f"{what} must be a mapping of keys to values, got {got}", loc_of(data)))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors.extend(diagnostics_from(e, model, data, what))
        return None


def _collect_blocks(data: LDict, base: Path, blocks: dict, origin: dict, errors: list, chain: tuple[str, ...]):
    for name, block in (data.get("blocks") or {}).items():
        here = loc_of(data["blocks"], name)
        if name in blocks:
            errors.append(Diagnostic(f"block '{name}' is defined twice (also at {origin[name]})", here, "rename one of them"))
            continue
        blocks[name], origin[name] = block, here
    includes = data.get("include") or []
    for i, rel in enumerate(includes):
        where = loc_of(includes, i)
        target = (base / rel).resolve()
        if str(target) in chain:
            errors.append(Diagnostic(f"include cycle: {' → '.join(Path(c).name for c in chain + (str(target),))}", where))
            continue
        if len(chain) > MAX_INCLUDE_DEPTH:
            errors.append(Diagnostic(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", where))
            continue
        if not target.exists():
            errors.append(Diagnostic(f"included file '{rel}' does not exist", where, f"paths are relative to {base}"))
            continue
        try:
            lib = load_yaml_file(target)
        except GraphcError as e:
            errors.extend(e.diagnostics)
            continue
        if _validate(lib, Library, "included file", errors) is not None:
            _collect_blocks(lib, target.parent, blocks, origin, errors, chain + (str(target),))


@without_gc
def load_spec(path: str | Path, text: str | None = None) -> LoadedSpec:
    """Load and structurally validate a spec file (or ``text`` shown as ``path``)."""
    path = str(path)
    return validate_spec(path, load_yaml_file(path) if text is None else load_yaml_text(text, path, document=True))


def validate_spec(path: str, data) -> LoadedSpec:
    """Structurally validate spec ``data`` read from ``path`` (possibly changed since, by ``--set``),
    with its includes. Raises every error found, unless the layers themselves are sound: then the
    result carries the errors, so that building the graph reports the layers' errors too."""
    errors: list[Diagnostic] = []
    spec = _validate(data, Spec, "spec", errors)
    if spec is None and not _layers_are_sound(data):
        raise GraphcError(errors)
    blocks: dict[str, LDict] = {}
    _collect_blocks(data, Path(path).parent, blocks, {}, errors, (str(Path(path).resolve()),))
    if spec is not None and errors:
        raise GraphcError(errors)
    return LoadedSpec(path, data, spec, blocks, errors)


def _layers_are_sound(data) -> bool:
    """Whether the layers and blocks are structurally valid, whatever is wrong elsewhere."""
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict) or not data["inputs"]:
        return False
    relaxed = {k: v for k, v in data.items() if k in ("layers", "blocks", "include")}
    relaxed["inputs"] = {str(name): {"shape": []} for name in data["inputs"]}
    try:
        Spec.model_validate(relaxed)
    except ValidationError:
        return False
    return True
