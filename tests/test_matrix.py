"""coursetools.matrix: tiny notebooks that fail only under one variable or one seed show up in the table."""

import nbformat
import pytest

from coursetools import matrix


def write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src, id=cell_id) for cell_id, src in cells]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbs")
    env = write_notebook(tmp / "env.ipynb", [
        ("setup", "import os"),
        ("mkl-claim", 'assert os.environ.get("MKL_CBWR") != "AVX2", "only on the AVX2 path"'),
        ("after", "x = 1"),
    ])
    seed = write_notebook(tmp / "seed.ipynb", [
        ("setup", 'import os\nSEED = int(os.environ.get("GRADFLOW_SEED", "0"))'),
        ("seed-claim", "value = 10 - SEED\nassert value != 7"),
    ])
    return env, seed


def test_legs_from_specs_and_presets():
    assert matrix.leg_from_spec("native") == matrix.Leg("native")
    leg = matrix.leg_from_spec("MKL_CBWR=COMPATIBLE  ATEN_CPU_CAPABILITY=default")
    assert leg.env == (("MKL_CBWR", "COMPATIBLE"), ("ATEN_CPU_CAPABILITY", "default"))
    assert leg.label == "MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default"
    with pytest.raises(ValueError, match="not VAR=VALUE"):
        matrix.leg_from_spec("AVX2")
    assert [leg.label for leg in matrix.PORTABLE] == [
        "native", "MKL_CBWR=COMPATIBLE", "MKL_CBWR=AVX2", "MKL_CBWR=AVX512", "ATEN_CPU_CAPABILITY=default",
        "OMP_NUM_THREADS=1"]
    assert [leg.label for leg in matrix.SEEDS] == [f"GRADFLOW_SEED={s}" for s in range(5)]
    assert matrix.default_jobs() >= 1


def test_find_notebooks(tmp_path, notebooks):
    env, seed = notebooks
    assert matrix.find_notebooks([env.parent]) == sorted([env.resolve(), seed.resolve()])
    assert matrix.find_notebooks([str(seed)]) == [seed.resolve()]
    with pytest.raises(FileNotFoundError):
        matrix.find_notebooks([tmp_path / "missing.ipynb"])
    assert all(p.suffix == ".ipynb" and "book" in p.parts for p in matrix.find_notebooks([]))


def test_a_cell_that_fails_only_under_one_variable(notebooks, monkeypatch):
    env, seed = notebooks
    monkeypatch.setenv("MKL_CBWR", "AVX2")  # the caller's shell must not leak into the native leg
    legs = [matrix.Leg("native"), matrix.leg_from_spec("MKL_CBWR=AVX2")]
    results = matrix.run(legs, [env, seed], jobs=2)
    by = {(r.leg.name, r.notebook.rsplit("/", 1)[-1]): r for r in results}
    assert by["native", "env.ipynb"].failures == [] and by["native", "env.ipynb"].passed == 3
    (failure,) = by["MKL_CBWR=AVX2", "env.ipynb"].failures
    assert failure.cell == "mkl-claim" and failure.reason == "AssertionError: only on the AVX2 path"
    assert by["MKL_CBWR=AVX2", "env.ipynb"].passed == 2  # the cells after a failure still run
    text = matrix.table(results, legs)
    assert "| native | all 2 pass | 5 cells | |" in text
    assert "| MKL_CBWR=AVX2 | " in text and "| mkl-claim | AssertionError: only on the AVX2 path |" in text


def test_a_claim_that_fails_for_one_seed(notebooks, capsys):
    _, seed = notebooks
    assert matrix.main(["seeds", "--only", "seed-0,seed-3", "--jobs", "2", str(seed)]) == 1
    out = capsys.readouterr().out
    assert "| GRADFLOW_SEED=0 | all 1 pass | 2 cells | |" in out
    assert "| seed-claim | AssertionError: assert value != 7 |" in out  # a bare assert quotes its line
    assert "1 failing cell(s)" in out
    assert matrix.main(["seeds", "--only", "seed-1", str(seed)]) == 0


def test_a_broken_notebook_is_a_failure_not_a_crash(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    (result,) = matrix.run([matrix.Leg("native")], [bad], jobs=1)
    assert len(result.failures) == 1 and result.failures[0].cell == "-"
    with pytest.raises(SystemExit):
        matrix.main(["--only", "avx3", str(bad)])
