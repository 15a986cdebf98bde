"""Reading a spec: safe YAML, structural validation, includes. All errors of a stage are reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .diagnose import diagnostics_from
from .errors import Diagnostic, GraphcError
from .spec import Library, Spec
from .yamlsafe import LDict, load_yaml_file, load_yaml_text, loc_of

MAX_INCLUDE_DEPTH = 16


@dataclass
class LoadedSpec:
    """A structurally valid spec: its raw data (with positions), the model, and every block by name."""

    path: str
    data: LDict
    spec: Spec
    blocks: dict[str, LDict]

    @property
    def name(self) -> str:
        return self.spec.name or Path(self.path).stem


def _validate(data, model, what: str, errors: list[Diagnostic]):
    if not isinstance(data, dict):
        errors.append(Diagnostic(f"{what} must be a mapping, got {type(data).__name__}", loc_of(data)))
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
        if not target.is_file():
            errors.append(Diagnostic(f"included file '{rel}' does not exist", where, f"paths are relative to {base}"))
            continue
        try:
            lib = load_yaml_file(target)
        except GraphcError as e:
            errors.extend(e.diagnostics)
            continue
        if _validate(lib, Library, "included file", errors) is not None:
            _collect_blocks(lib, target.parent, blocks, origin, errors, chain + (str(target),))


def load_spec(path: str | Path, text: str | None = None) -> LoadedSpec:
    """Load and structurally validate a spec file (or ``text`` shown as ``path``)."""
    path = str(path)
    data = load_yaml_file(path) if text is None else load_yaml_text(text, path)
    errors: list[Diagnostic] = []
    spec = _validate(data, Spec, "spec", errors)
    blocks: dict[str, LDict] = {}
    if spec is not None:
        base = Path(path).parent
        _collect_blocks(data, base, blocks, {}, errors, (str(Path(path).resolve()),))
    if errors:
        raise GraphcError(errors)
    return LoadedSpec(path, data, spec, blocks)
