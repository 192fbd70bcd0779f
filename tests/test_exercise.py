"""gradflow.checks.exercise: plain data round trips, probes that fail in every way, judges on hostile data."""

import json
import math
import time

import numpy as np
import pytest
import torch

from gradflow.checks import exercise as ex
from gradflow.checks.vanishing import NIELSEN_FACTOR, SIGMOID_DERIVATIVE


def roundtrip(obj):
    return ex.from_plain(json.loads(json.dumps(ex.to_plain(obj), allow_nan=False)))


def test_arrays_keep_values_shape_and_precision():
    t32 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    back = roundtrip(t32)
    assert back.dtype == np.float32 and back.shape == (3, 4) and np.array_equal(back, t32.numpy())
    t64 = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert np.array_equal(roundtrip(t64), t64.numpy()) and roundtrip(t64).dtype == np.float64
    assert roundtrip(torch.tensor(2.5)).shape == () and roundtrip(np.float32(1.5)).dtype == np.float32
    assert roundtrip(torch.zeros(0, 3)).shape == (0, 3)
    assert roundtrip(torch.tensor([True, False])).dtype == np.bool_


def test_non_finite_numbers_survive_strict_json():
    back = roundtrip(torch.tensor([1.0, float("nan"), float("inf")]))
    assert back[0] == 1.0 and math.isnan(back[1]) and back[2] == math.inf and back.dtype == np.float32
    assert math.isnan(roundtrip(float("nan"))) and roundtrip(-math.inf) == -math.inf


def test_containers_and_odd_objects():
    assert roundtrip([1, (2.0, "a"), None]) == [1, [2.0, "a"], None]
    assert roundtrip({"a": 1, 3: [True]}) == {"a": 1, 3: [True]}
    opaque = roundtrip(torch.nn.Linear(2, 2))
    with pytest.raises(AssertionError, match="returned a Linear"):
        ex.value(opaque, "f")
    assert len(roundtrip("x" * 10**6)) <= ex.MAX_TEXT + 1
    assert np.allclose(roundtrip(np.array([torch.tensor(1.0), 2.0], dtype=object)), [1.0, 2.0])


def test_too_large_outputs_are_refused_not_copied():
    out = ex.to_plain(np.zeros(ex.MAX_NUMBERS + 1))
    assert out["kind"] == "too large" and "__array__" not in out
    assert ex.to_plain([np.zeros(ex.MAX_NUMBERS // 2)] * 3)["kind"] == "too large"


def test_from_plain_rejects_lies():
    with pytest.raises(ValueError):
        ex.from_plain({"__array__": [1, 2, 3], "dtype": "float64", "shape": [2, 2]})
    with pytest.raises(ValueError):
        ex.from_plain({"__pickle__": "..."})
    assert ex.from_plain({"__array__": [1, 2], "dtype": "object", "shape": [2]}).dtype == np.float64


def judge_double(case, out):
    out = ex.value(out, "double")
    assert np.allclose(out, 2 * np.asarray(case["x"])), f"double({case['x']}) = {out}"


DOUBLE = ex.Exercise("double", ["double"], lambda seed: [{"x": [seed, 1.0]}],
                     lambda f, case: f(torch.tensor(case["x"])), judge_double, timeout=1)


@pytest.mark.parametrize("fn, words", [
    (lambda x: 3 * x, "double(["),
    (None, "should be a function"),
    (lambda x: (_ for _ in ()).throw(NotImplementedError()), "not implemented"),
    (lambda x: 1 / 0, "ZeroDivisionError"),
    (lambda x: exit(3), "SystemExit"),
    (lambda x: torch.nn.Linear(1, 1), "returned a Linear"),
    (lambda x: undefined_name, "did you run the cell"),  # noqa: F821
    (lambda x: [[1], [2, 3]], "could not be read"),
])
def test_every_failure_becomes_a_message(fn, words):
    with pytest.raises(AssertionError, match=words.replace("(", r"\(").replace("[", r"\[")):
        DOUBLE.check(fn)


def test_a_hanging_probe_is_stopped():
    start = time.monotonic()
    with pytest.raises(AssertionError, match="took too long"):
        DOUBLE.check(lambda x: time.sleep(30))
    assert time.monotonic() - start < 5


def test_verdict_never_trusts_the_shape_of_what_comes_back():
    cases = DOUBLE.cases(0)
    assert DOUBLE.verdict(cases, DOUBLE.run([lambda x: 2 * x], cases)) is None
    for junk in [None, [], [1, 2], "x", [{"__array__": "nope"}], [{"__dict__": 5}]]:
        assert isinstance(DOUBLE.verdict(cases, junk), str)


def test_chapter_one_examples():
    SIGMOID_DERIVATIVE.check(lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)))
    SIGMOID_DERIVATIVE.check(lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)), seed=12345)
    with pytest.raises(AssertionError, match="itself"):
        SIGMOID_DERIVATIVE.check(torch.sigmoid)
    NIELSEN_FACTOR.check(25)
    NIELSEN_FACTOR.check(torch.tensor(25.0))
    with pytest.raises(AssertionError, match="w alone"):
        NIELSEN_FACTOR.check(100)
    assert ex.REGISTRY["ch1-ex1-tests"] == [SIGMOID_DERIVATIVE]


def test_grading_additions():
    """load_registry fills REGISTRY from gradflow.checks; plain_cases are JSON copies; module_of names the module."""
    registry = ex.load_registry()
    assert registry is ex.REGISTRY and "ch1-ex1-tests" in registry
    assert ex.module_of(SIGMOID_DERIVATIVE) == "gradflow.checks.vanishing"
    cases = ex.plain_cases(SIGMOID_DERIVATIVE, 7)
    assert cases == json.loads(json.dumps(SIGMOID_DERIVATIVE.cases(7)))
    tuples = ex.Exercise("pair", ["f"], lambda seed: [{"x": (1, 2)}], lambda f, case: f(case["x"]),
                         lambda case, out: None)
    assert ex.plain_cases(tuples, 0) == [{"x": [1, 2]}]  # what the sandbox gets: lists, as JSON has them
    seen = []
    tuples.check(lambda x: seen.append(x))
    assert seen == [[1, 2]], "check hands the probe the same JSON copy as grading does"
    opaque = ex.Exercise("bad", ["f"], lambda seed: [{"x": object()}], lambda f, case: 0, lambda case, out: None)
    with pytest.raises(TypeError, match="'bad' are not plain data"):
        opaque.check(lambda x: x)
