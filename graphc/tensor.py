"""Tensor types of the IR: a shape of static ints and symbolic dims, and a dtype.

A dim is one of

- an ``int``: a static size;
- a plain ``str``: a name that passes through ops unchanged, the batch ``N`` (the first dim of an
  input); per-example costs count it as 1;
- a :class:`Size`: a symbolic size, a name of the spec in any other place of an input (``H``, ``W``)
  or an expression of such names that shape rules computed (``floor((H + 1)/2)``). Costs keep it:
  MACs and bytes become expressions of the names.

Shape rules do their arithmetic with ``+ − * // %`` on dims: ints stay ints (no sympy on that road),
a :class:`Size` operand makes the result an expression (sympy, imported only then). Where a rule
compares a size (an output below 1, windows that do not tile), it decides for ints and skips or
defers for a Size: a run binds the names from its inputs (:func:`evaluate`) and re-infers every
shape with ints (:func:`graphc.ir.analysis.specialize`), where the rule decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Container

from .errors import ShapeError


class Size(str):
    """A symbolic size: a name (``H``) or an expression of names (``floor((H + 1)/2)``).

    It is a ``str``, its canonical text, so that code telling static from symbolic dims with
    ``isinstance(d, str)`` treats it as any symbolic dim, and equal expressions are equal dims (==
    and hash by the text; :func:`_floor_div` keeps floors in one canonical form so that two paths
    computing the same size print it alike). ``+ − * // %`` with ints and Sizes give a Size, or an
    int when the names cancel. A comparison with a number is decided when sympy can decide it for
    every value of the names (positive integers); otherwise it raises a ShapeError naming the
    expression: a rule that needs the answer needs a static size.
    """

    def __new__(cls, text: str, expr=None):
        self = super().__new__(cls, text)
        self._expr = expr  # the sympy expression; None for a bare name until arithmetic needs it
        return self

    def __reduce__(self):
        return (Size, (str(self), self._expr))

    @property
    def expr(self):
        if self._expr is None:
            self._expr = _symbol(str(self))
        return self._expr

    @property
    def is_name(self) -> bool:
        """A bare name of the spec (``H``), not an expression of names."""
        return self._expr is None or self._expr.is_Symbol

    @property
    def names(self) -> tuple[str, ...]:
        """The spec's names the size depends on, sorted."""
        if self._expr is None:
            return (str(self),)
        return tuple(sorted(s.name for s in self._expr.free_symbols))

    def _op(self, other, fn, reflected=False):
        if isinstance(other, bool) or not isinstance(other, (int, Size)):
            return NotImplemented
        a, b = self.expr, _as_expr(other)
        return _wrap(fn(b, a) if reflected else fn(a, b))

    def __add__(self, other):
        return self._op(other, lambda a, b: a + b)

    def __radd__(self, other):
        return self._op(other, lambda a, b: a + b, True)

    def __sub__(self, other):
        return self._op(other, lambda a, b: a - b)

    def __rsub__(self, other):
        return self._op(other, lambda a, b: a - b, True)

    def __mul__(self, other):
        return self._op(other, lambda a, b: a * b)

    def __rmul__(self, other):
        return self._op(other, lambda a, b: a * b, True)

    def __floordiv__(self, other):
        return self._op(other, _floor_div)

    def __rfloordiv__(self, other):
        return self._op(other, _floor_div, True)

    def __mod__(self, other):
        return self._op(other, lambda a, b: a - b * _floor_div(a, b))

    def __rmod__(self, other):
        return self._op(other, lambda a, b: a - b * _floor_div(a, b), True)

    def __neg__(self):
        return _wrap(-self.expr)

    def __pos__(self):
        return self

    def _compare(self, other, symbol: str, fn, str_fn):
        if isinstance(other, str):
            return str_fn(self, other)
        if isinstance(other, bool) or not isinstance(other, (int, float)):
            return NotImplemented
        decided = fn(self.expr, other)
        if decided in (True, False):
            return bool(decided)
        raise ShapeError(f"cannot tell whether {self} {symbol} {other} for every {', '.join(self.names)}: "
                         f"this needs a static size (bind {', '.join(self.names)} with --size, or give it in the spec)")

    def __lt__(self, other):
        return self._compare(other, "<", lambda a, b: a < b, str.__lt__)

    def __le__(self, other):
        return self._compare(other, "≤", lambda a, b: a <= b, str.__le__)

    def __gt__(self, other):
        return self._compare(other, ">", lambda a, b: a > b, str.__gt__)

    def __ge__(self, other):
        return self._compare(other, "≥", lambda a, b: a >= b, str.__ge__)

    def __format__(self, spec: str) -> str:
        """A count written ``f"{n:,}"`` shows its expression: digit grouping applies to numbers only."""
        return str(self) if spec in (",", "_", "d", ",d") else str.__format__(str(self), spec)

    __eq__ = str.__eq__
    __hash__ = str.__hash__


Dim = int | str  # a static size, a name passed through (the batch "N"), or a Size
Shape = tuple[Dim, ...]


def _sympy():
    import sympy  # only when a symbolic size meets arithmetic: compiling static specs never loads it

    return sympy


def _symbol(name: str):
    return _sympy().Symbol(name, integer=True, positive=True)


def _as_expr(value):
    return value.expr if isinstance(value, Size) else _sympy().Integer(value)


def _wrap(expr) -> Dim:
    """An int when the expression is a number, else the Size printing it."""
    if expr.is_Integer:
        return int(expr)
    return Size(_text(expr), expr)


def _floor_div(a, q):
    """``floor(a / q)`` in one canonical form, for a polynomial ``a`` with integer coefficients and an
    integer ``q ≥ 1``: ``a = q·b + r`` with every coefficient of ``r`` in ``[0, q)`` gives
    ``b + floor(r/q)`` (so ``floor((H − 1)/2) + 1`` is ``floor((H + 1)/2)``, as 'same' padding's
    ``ceil(H/2)`` is); a floor of a floor plus a constant folds, ``floor((floor(u/p) + c)/q) =
    floor((u + c·p)/(p·q))``, so strided layers in a row stay one floor."""
    sp = _sympy()
    if not (q.is_Integer and q > 0):
        return sp.floor(a / q)
    q = int(q)
    a = sp.expand(a)
    if q == 1:
        return a
    whole, rest = sp.Integer(0), sp.Integer(0)
    for term in sp.Add.make_args(a):
        c, m = term.as_coeff_Mul()
        if not c.is_Integer:
            return sp.floor(a / q)
        d, r = divmod(int(c), q)
        whole, rest = whole + d * m, rest + r * m
    if rest == 0:
        return whole
    floors = [t for t in sp.Add.make_args(rest) if isinstance(t, sp.floor)]
    if len(floors) == 1 and (rest - floors[0]).is_Integer:
        inner, p = floors[0].args[0].as_numer_denom()
        if p.is_Integer and p > 0:
            return whole + _floor_div(inner + (rest - floors[0]) * p, p * q)
    return whole + sp.floor(rest / q)


_PRINTER = []  # the printer, made on first use (its class derives from sympy's)


def _text(expr) -> str:
    """The canonical text of a size expression: sympy's, with floors written ``floor((H + 1)/2)``."""
    if not _PRINTER:
        from sympy.printing.str import StrPrinter

        class Printer(StrPrinter):
            def _print_floor(self, e):
                num, den = e.args[0].as_numer_denom()
                shown = self._print(num)
                if not (num.is_Symbol or num.is_Function):
                    shown = f"({shown})"
                return f"floor({shown}/{self._print(den)})"

        _PRINTER.append(Printer())
    sp = _sympy()
    # a number times a sum is distributed by sympy (16·(10·x − 10)); shown factored, 160·(x − 1), term by term
    terms = [sp.factor_terms(t) if t.is_Mul else t for t in sp.Add.make_args(expr)]
    shown = sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]
    return _PRINTER[0].doprint(shown)


def is_static(dim) -> bool:
    return isinstance(dim, int)


def evaluate(dim, sizes: dict[str, int], default: int | None = None) -> int:
    """The int a dim takes with the names bound to ``sizes`` (``default`` for an unbound name, or a
    KeyError naming it when there is none)."""
    if isinstance(dim, int):
        return dim
    if not isinstance(dim, Size) or dim._expr is None:
        got = sizes.get(str(dim), default)
        if got is None:
            raise KeyError(str(dim))
        return got
    bound = {}
    for s in dim.expr.free_symbols:
        got = sizes.get(s.name, default)
        if got is None:
            raise KeyError(s.name)
        bound[s] = got
    return int(dim.expr.xreplace({s: _sympy().Integer(v) for s, v in bound.items()}))


def size_names(shape) -> set[str]:
    """The spec's names that the Size dims of ``shape`` depend on (the batch's plain names excluded)."""
    return {n for d in shape if isinstance(d, Size) for n in d.names}

DTYPES = ("float32", "float64", "int64")
DTYPE_BYTES = {"float32": 4, "float64": 8, "int64": 8}


@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return "(" + ", ".join(map(str, self.shape)) + ")"

    def numel(self, symbol_value: int = 1) -> Dim:
        """Element count, taking every plain symbolic dim (the batch) as ``symbol_value`` (costs are
        per example); Size dims stay in it, an expression of their names."""
        n = 1
        for d in self.shape:
            if isinstance(d, int):
                n *= d
            elif isinstance(d, Size):
                n = d * n
            else:
                n *= symbol_value
        return n

    def nbytes(self, symbol_value: int = 1) -> int:
        return self.numel(symbol_value) * DTYPE_BYTES[self.dtype]

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)


def static(dim: Dim, what: str) -> int:
    """A dim that must be known at compile time (kernel arithmetic, unrolled time steps)."""
    if not isinstance(dim, int):
        if isinstance(dim, Size):
            names = ", ".join(dim.names)
            raise ShapeError(f"{what} must be a static size, got '{dim}', which depends on the input size {names} "
                             f"(give {names} in the spec, or bind it with --size)")
        raise ShapeError(f"{what} must be a static size, got symbolic '{dim}'")
    return dim


def fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting over static and symbolic dims (equal symbols match each other)."""
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError("cannot broadcast " + " with ".join(fmt_shape(s) for s in shapes) + f": axis {axis} has sizes {sorted(map(str, dims))}")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def free_name(base: str, taken: Container[str]) -> str:
    """``base``, or the first of ``base_2``, ``base_3``, … not in ``taken``. The one rule for fresh
    names: ONNX export's nodes, its shape folding's constants, import's layers and rewritten values."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def unique_name(base: str, taken: set[str]) -> str:
    """:func:`free_name`, added to ``taken``."""
    name = free_name(base, taken)
    taken.add(name)
    return name
