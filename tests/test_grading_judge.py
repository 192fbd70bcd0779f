"""coursetools.judge without a sandbox: seeds of the hidden cases, reading submissions, the verdict cache."""

from coursetools import judge
from gradflow.checks.exercise import Exercise


def test_case_seeds_are_per_student_and_reproducible():
    seed = judge.case_seed("s3cret", "01_vanishing", "jdoe", "vanishing", "ch1-ex1-tests", 0)
    assert seed == judge.case_seed("s3cret", "01_vanishing", "jdoe", "vanishing", "ch1-ex1-tests", 0)
    others = {judge.case_seed("s3cret", "01_vanishing", s, "vanishing", "ch1-ex1-tests", 0) for s in ("a", "b", "c")}
    assert seed not in others and len(others) == 3
    assert judge.case_seed("other", "01_vanishing", "jdoe", "vanishing", "ch1-ex1-tests", 0) != seed
    assert 0 <= seed < 2**31 - 1


def test_reading_submissions():
    assert judge.read_submission(b"nope")[1].startswith("the file is not a notebook")
    assert "no list of cells" in judge.read_submission(b"[]")[1]
    assert "no code cells" in judge.read_submission(b'{"cells": [{"cell_type": "markdown"}]}')[1]
    nb, why = judge.read_submission(b'{"cells": [{"cell_type": "code", "source": "x = 1"}]}')
    assert why is None and nb["cells"][0]["source"] == "x = 1"
    assert "too large" in judge.read_submission(b" " * (judge.MAX_NOTEBOOK_BYTES + 1))[1]


def test_the_same_answers_to_the_same_cases_are_judged_once():
    calls = []

    def slow_judge(case, out):
        calls.append(case)
        if out != case["x"] * 2:
            raise AssertionError("wrong")

    ex = Exercise("double", ["f"], lambda seed: [{"x": 3}], lambda f, case: f(case["x"]), slow_judge)
    cases = [{"x": 3}]
    assert judge._verdict(ex, cases, [6]) is None and judge._verdict(ex, cases, [6]) is None
    assert judge._verdict(ex, cases, [7]) == "wrong" and judge._verdict(ex, cases, [7]) == "wrong"
    assert len(calls) == 2, "one judging per distinct answer"
