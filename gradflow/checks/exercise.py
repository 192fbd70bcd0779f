"""Exercises whose verdict is decided outside the student's code.

An :class:`Exercise` has three parts, so that grading can run them in different processes:

``cases(seed)``
    the inputs, drawn from a seed, as *plain data* (numbers, strings, lists, dicts: JSON).
    In the notebook the seed is public; at grading time it is the instructor's secret.
``probe(*answers, case)``
    runs the student's code on one case and returns whatever it returns. It runs in the
    student's kernel (at grading time: in a sandbox), so nothing it returns is trusted: its
    result is turned into plain data by :func:`to_plain` and handed back.
``judge(case, out)``
    compares that plain output with a reference it computes itself, and raises
    ``AssertionError`` with a message that names the mistake. It runs in the grader's process,
    which never executes student code.

In the notebook, ``exercise.check(answer, ...)`` does all three in one process, through the same
plain-data round trip, so a student sees exactly the verdict the grader will give. A test cell
may call several exercises; :data:`REGISTRY` maps each nbgrader ``grade_id`` to them.

Plain data: arrays (torch or NumPy) become ``{"__array__": nested list, "dtype": ..., "shape": ...}``
and come back as NumPy arrays of the same precision (a float32 answer stays float32, so a judge
can say that precision is the problem); non-finite floats are ``{"__float__": "nan"}``; an
exception in the student's code becomes ``{"__error__": message, "kind": ...}`` and comes back as
a :class:`StudentError`, which :func:`value` turns into the message a student should read.

Cases are plain data too: ``check`` hands the probe a JSON copy of each case (lists where the case
had tuples), exactly what the grader hands the sandbox, so a probe cannot depend on anything else;
a case that is not JSON raises ``TypeError`` naming the exercise.

Additions for grading (coursetools), compatible with the API above:

- :func:`load_registry` imports every checker module of ``gradflow.checks`` (so that their
  ``register`` calls fill :data:`REGISTRY`) and returns it;
- :func:`plain_cases` is ``exercise.cases(seed)`` checked to be JSON and copied through it;
- :func:`module_of` names the module that defines an exercise (what the sandbox must import).
"""

import importlib
import json
import math
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import time_limit

__all__ = ["Exercise", "StudentError", "REGISTRY", "register", "to_plain", "from_plain", "value", "MAX_NUMBERS",
           "load_registry", "plain_cases", "module_of"]

MAX_NUMBERS = 2_000_000  # numbers in one probe's output; more is refused, not copied
MAX_TEXT = 2_000  # characters of a string or repr kept in plain data

_NUMPY_OF_TORCH = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
                   torch.bfloat16: "float32", torch.int64: "int64", torch.int32: "int32", torch.int16: "int16",
                   torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}  # fmt: skip


class StudentError:
    """What came back instead of a value: the student's code raised, timed out, or returned junk."""

    def __init__(self, message, kind="exception"):
        self.message, self.kind = str(message), str(kind)

    def __repr__(self):
        return f"StudentError({self.message!r}, kind={self.kind!r})"


class _TooLarge(Exception):
    pass


def _float(x):
    x = float(x)
    return x if math.isfinite(x) else {"__float__": repr(x)}


def to_plain(obj, _budget=None):
    """``obj`` as JSON-able plain data (see the module's docstring). Never raises for odd objects."""
    budget = [MAX_NUMBERS] if _budget is None else _budget

    def spend(n):
        budget[0] -= n
        if budget[0] < 0:
            raise _TooLarge

    try:
        if obj is None or isinstance(obj, (bool, str)):
            if isinstance(obj, str) and len(obj) > MAX_TEXT:
                return obj[:MAX_TEXT] + "…"
            return obj
        if isinstance(obj, int):
            return obj if abs(obj) < 2**63 else _float(obj)
        if isinstance(obj, float):
            return _float(obj)
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            if t.is_complex():
                return {"__object__": "complex tensor", "repr": repr(t)[:MAX_TEXT]}
            dtype = _NUMPY_OF_TORCH.get(t.dtype, "float64")
            spend(t.numel())
            arr = t.to(torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype).numpy()
            return _array(arr, dtype)
        if isinstance(obj, (np.ndarray, np.generic)):
            arr = np.asarray(obj)
            if arr.dtype.kind not in "biuf":
                if arr.dtype.kind == "O" and arr.size <= 10_000:  # e.g. np.array of tensors or floats
                    return {"__list__": [to_plain(v, budget) for v in arr.ravel().tolist()], "shape": list(arr.shape)}
                return {"__object__": f"array of {arr.dtype}", "repr": repr(arr)[:MAX_TEXT]}
            spend(arr.size)
            return _array(arr, arr.dtype.name)
        if isinstance(obj, (list, tuple)):
            spend(len(obj))
            return [to_plain(v, budget) for v in obj]
        if isinstance(obj, dict):
            spend(len(obj))
            return {"__dict__": [[to_plain(k, budget), to_plain(v, budget)] for k, v in obj.items()]}
        return {"__object__": type(obj).__name__, "repr": _safe_repr(obj)}
    except _TooLarge:
        if _budget is not None:
            raise
        return {"__error__": f"the output has more than {MAX_NUMBERS:,} numbers", "kind": "too large"}


def _safe_repr(obj):
    try:
        return repr(obj)[:MAX_TEXT]
    except Exception:  # noqa: BLE001 - a student's __repr__ may raise anything
        return f"<{type(obj).__name__}>"


def _array(arr, dtype):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        data = [_float(v) for v in arr.astype(np.float64).ravel().tolist()]
        return {"__array__": data, "dtype": dtype, "shape": list(arr.shape), "flat": True}
    return {"__array__": arr.tolist(), "dtype": dtype, "shape": list(arr.shape)}


def from_plain(p):
    """The inverse of :func:`to_plain`, for the grader: arrays become NumPy arrays of their dtype."""
    if isinstance(p, list):
        return [from_plain(v) for v in p]
    if not isinstance(p, dict):
        return p
    if "__array__" in p:
        dtype = p.get("dtype") if p.get("dtype") in _ALLOWED_DTYPES else "float64"
        shape = tuple(int(s) for s in p.get("shape", ()))
        data = p["__array__"]
        if p.get("flat"):
            data = [from_plain(v) for v in data]
            return np.array(data, dtype=np.float64).astype(dtype).reshape(shape)
        arr = np.array(data, dtype=dtype)
        if arr.size == 0 and 0 in shape:
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise ValueError(f"array of shape {arr.shape} claims shape {shape}")
        return arr
    if "__float__" in p:
        return float(p["__float__"])
    if "__error__" in p:
        return StudentError(p["__error__"], p.get("kind", "exception"))
    if "__dict__" in p:
        return {_key(from_plain(k)): from_plain(v) for k, v in p["__dict__"]}
    if "__list__" in p:
        items = [from_plain(v) for v in p["__list__"]]
        try:
            return np.array(items, dtype=np.float64).reshape(tuple(p.get("shape", (len(items),))))
        except (TypeError, ValueError):
            return items
    if "__object__" in p:
        return _Opaque(str(p["__object__"]), str(p.get("repr", "")))
    raise ValueError(f"not plain data: keys {sorted(p)[:5]}")


_ALLOWED_DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}


def _key(k):
    return tuple(k) if isinstance(k, list) else k


class _Opaque:
    """An object that could not cross as data (a module, a generator, ...): only its type and repr."""

    def __init__(self, type_name, text):
        self.type_name, self.text = type_name, text

    def __repr__(self):
        return f"<{self.type_name}>"


def value(out, name):
    """``out`` itself, or an AssertionError that says what the student's code did instead of returning a value."""
    if isinstance(out, StudentError):
        raise AssertionError(out.message)
    if isinstance(out, _Opaque):
        raise AssertionError(f"{name} returned a {out.type_name} ({out.text[:60]}), not numbers")
    return out


def _describe(err, name):
    if isinstance(err, NotImplementedError):
        return f"{name} is not implemented yet (it raises NotImplementedError)", "not implemented"
    if isinstance(err, TimeoutError):
        return f"{name} took too long ({err})", "timeout"
    if isinstance(err, NameError):
        return f"{err}: did you run the cell that defines it?", "missing"
    return f"{name} raised {type(err).__name__}: {err}", "exception"


@dataclass
class Exercise:
    """One checked answer: cases from a seed, a probe in the student's process, a judge outside it.

    ``answers`` are the names the probe receives from the student's namespace, in order. ``name``
    is what messages call the answer. ``functions`` are the answers that must be callable (default:
    all of them; pass ``()`` when the answers are values). ``timeout`` limits one probe call (seconds).
    """

    name: str
    answers: Sequence[str]
    cases: Callable[[int], list]
    probe: Callable[..., Any]
    judge: Callable[[Any, Any], None]
    functions: Sequence[str] | None = None
    timeout: float = 20
    hidden_seed: int = field(default=1_000_003)  # the instructor notebook's hidden tests; grading draws its own

    # ---- in the student's process (the sandbox at grading time)
    def run(self, values, cases):
        """Plain outputs of ``probe(*values, case)`` for each case; an error becomes plain data, never raised."""
        functions = self.answers if self.functions is None else self.functions
        for answer, val in zip(self.answers, values, strict=False):
            if answer in functions and not callable(val):
                message = (f"expected a function: {answer} should be a function, "
                           f"but it is {type(val).__name__} ({_safe_repr(val)[:60]})")
                return [{"__error__": message, "kind": "not a function"} for _ in cases]
        outputs = []
        for case in cases:
            try:
                with time_limit(max(1, math.ceil(self.timeout)), self.name):
                    raw = self.probe(*values, case)
                outputs.append(to_plain(raw))
            except BaseException as err:  # noqa: BLE001 - student code may raise anything, even SystemExit
                if isinstance(err, KeyboardInterrupt):
                    raise
                message, kind = _describe(err, self.name)
                outputs.append({"__error__": message[:MAX_TEXT], "kind": kind})
        return outputs

    # ---- in the grader
    def verdict(self, cases, outputs):
        """None if every output is right, else the first message (a str). Never runs student code."""
        if not isinstance(outputs, list) or len(outputs) != len(cases):
            return f"{self.name}: no answer was handed back"
        for case, out in zip(cases, outputs, strict=True):
            try:
                self.judge(case, from_plain(out))
            except AssertionError as err:
                return str(err) or f"{self.name} is not right"
            except Exception as err:  # noqa: BLE001 - malformed data is a wrong answer, not a grader crash
                return f"{self.name}: the answer could not be read ({type(err).__name__}: {str(err)[:200]})"
        return None

    # ---- in the notebook: both, through the same plain-data round trip
    def check(self, *values, seed=0, hidden=False):
        """Raise AssertionError with the grader's message if the answer is wrong (the test cells call this)."""
        cases = self.cases(self.hidden_seed if hidden else seed)
        started = time.monotonic()
        message = self.verdict(cases, self.run(values, _json_copy(cases, self.name)))
        if message:
            raise AssertionError(message)
        return time.monotonic() - started


# grade_id of a test cell -> the exercises it checks (filled by the chapters' checker modules)
REGISTRY: dict[str, list[Exercise]] = {}


def register(grade_id, *exercises):
    """Record that the test cell ``grade_id`` checks ``exercises`` (points come from the notebook)."""
    REGISTRY[grade_id] = list(exercises)
    return exercises[0] if len(exercises) == 1 else exercises


def _json_copy(cases, name):
    try:
        return json.loads(json.dumps(cases, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"the cases of the exercise {name!r} are not plain data (JSON): {err}") from None


def plain_cases(exercise, seed):
    """``exercise.cases(seed)`` as a list of plain (JSON) data; TypeError if it is not plain data."""
    cases = exercise.cases(seed)
    if not isinstance(cases, list):
        raise TypeError(f"the cases of the exercise {exercise.name!r} must be a list, not {type(cases).__name__}")
    return _json_copy(cases, exercise.name)


def module_of(exercise):
    """The module that defines ``exercise`` (its probe's module): what a sandbox imports to run it."""
    return getattr(exercise.probe, "__module__", None) or getattr(exercise.cases, "__module__", None)


def load_registry(packages=("gradflow.checks",)):
    """Import every module of ``packages`` (modules or packages, by name) and return :data:`REGISTRY`."""
    for name in packages:
        module = importlib.import_module(name)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            importlib.import_module(f"{module.__name__}.{info.name}")
    return REGISTRY
