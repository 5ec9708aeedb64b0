"""python -m verl_difficulty.data.entropy_quantiles: dataset quantiles -> a Hydra override Durian accepts."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_difficulty.data.entropy_quantiles import main


def write(path, entropies, key="visual_entropy"):
    infos = [None if h == "no-extra-info" else {key: h, "index": i} for i, h in enumerate(entropies)]
    pq.write_table(pa.table({"data_source": ["geo"] * len(entropies), "extra_info": infos}), path)
    return str(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_prints_the_override_line_with_numpy_quantiles(tmp_path, capsys):
    values = [3.0, 1.0, 2.0, 6.0, 5.0, 4.0]
    code, out, err = run(capsys, write(tmp_path / "a.parquet", values))
    assert code == 0
    assert out == "algorithm.durian.perceptual_thresholds=[2.25,4.75]"
    assert np.quantile(values, [0.25, 0.75]).tolist() == [2.25, 4.75]
    assert "6 rows (0 without a value skipped)" in err and "2 / 2 / 2" in err  # closed buckets: the paper's 2:2:2


def test_several_files_are_pooled_and_quantiles_configurable(tmp_path, capsys):
    first = write(tmp_path / "a.parquet", [1.0, 2.0, 3.0])
    second = write(tmp_path / "b.parquet", [4.0, 5.0])
    code, out, _ = run(capsys, first, second, "--quantiles", "0.5", "0.75")
    assert code == 0 and out == "algorithm.durian.perceptual_thresholds=[3.0,4.0]"


def test_the_line_round_trips_through_hydra_into_durian_settings(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from verl_difficulty.config import CONFIG_DIR, TRAINER_CONFIG_NAME
    from verl_difficulty.settings import DurianConfig

    values = np.random.default_rng(0).uniform(1, 8, 500)
    _, out, _ = run(capsys, write(tmp_path / "a.parquet", values.tolist()))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[out])
    assert DurianConfig.from_algorithm(cfg.algorithm).perceptual_thresholds == tuple(np.quantile(values, [0.25, 0.75]))


def test_missing_value_names_the_row_and_the_fix(tmp_path, capsys):
    path = write(tmp_path / "a.parquet", [1.0, None, 3.0, "no-extra-info", 5.0])
    code, out, err = run(capsys, path)
    assert code == 2 and out == ""
    assert f"{path}: row 1 (2 rows in all) has no extra_info.visual_entropy" in err and "--skip-missing" in err
    code, out, err = run(capsys, path, "--skip-missing")
    assert code == 0 and out == "algorithm.durian.perceptual_thresholds=[2.0,4.0]"
    assert "3 rows (2 without a value skipped)" in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_value_names_the_row(tmp_path, capsys, bad):
    path = write(tmp_path / "a.parquet", [1.0, 2.0, bad, 4.0])
    code, _, err = run(capsys, path, "--skip-missing")  # not a missing value: refused even so
    assert code == 2 and f"row 2 (1 rows in all) has extra_info.visual_entropy={bad!r}, which is not finite" in err


def test_other_errors_name_the_fix(tmp_path, capsys):
    path = write(tmp_path / "a.parquet", [1.0, 2.0, 3.0])
    assert "no column 'extra_info.entropy'" in run(capsys, path, "--key", "extra_info.entropy")[2]
    assert "data_source has type string, not a number" in run(capsys, path, "--key", "data_source")[2]
    assert "two increasing fractions" in run(capsys, path, "--quantiles", "0.75", "0.25")[2]
    tied = write(tmp_path / "tied.parquet", [1.0, 2.0, 2.0, 2.0, 2.0, 3.0])
    assert "quantiles are both 2.0" in run(capsys, tied)[2]
    (tmp_path / "text.parquet").write_text("not parquet")
    assert "not a readable parquet file" in run(capsys, tmp_path / "text.parquet")[2]
    assert run(capsys, tmp_path / "absent.parquet")[0] == 2


def test_runs_as_a_module(tmp_path):
    path = write(tmp_path / "a.parquet", [1.0, 2.0, 3.0, 4.0, 5.0])
    done = subprocess.run([sys.executable, "-m", "verl_difficulty.data.entropy_quantiles", path],
                          capture_output=True, text=True, check=True)
    assert done.stdout == "algorithm.durian.perceptual_thresholds=[2.0,4.0]\n"
