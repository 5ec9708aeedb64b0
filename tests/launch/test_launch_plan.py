"""The launcher's decisions as data: counts from the cluster's nodes, the job's environment, the logger."""

from __future__ import annotations

import pytest

from verl_difficulty import launch


def node(gpus: float, alive: bool = True, head: bool = False) -> dict:
    return {"alive": alive, "gpus": gpus, "ip": "10.0.0.1", "head": head}


def test_counts_from_the_nodes():
    cluster = launch.cluster_from_nodes([node(0, head=True), node(8), node(8), node(4, alive=False)])
    assert (cluster.nnodes, cluster.gpus_per_node) == (2, 8)  # a CPU-only head and a dead node do not count
    cluster = launch.cluster_from_nodes([node(8, head=True), node(4)])
    assert (cluster.nnodes, cluster.gpus_per_node) == (2, 4)  # verl needs the same count on every node
    with pytest.raises(launch.LaunchError, match="no GPUs"):
        launch.cluster_from_nodes([node(0, head=True)])


@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "recipes" / "demo").mkdir(parents=True)
    (tmp_path / "recipes" / "common.sh").write_text('echo "${CHECKPOINT_DIR:-x}" "$PATH"\n')
    script = tmp_path / "recipes" / "demo" / "run.sh"
    script.write_text('MODEL="${MODEL:-m}"; echo "$HF_TOKEN" "${LOGGER}" "$OUT"\n')
    return script


def test_forwarded_env(recipe):
    environ = {"MODEL": "/m", "CHECKPOINT_DIR": "/ck", "PATH": "/bin", "HF_TOKEN": "s3cret", "LOGGER": "[console]",
               "UNRELATED": "1", "WANDB_API_KEY": "k", "VERL_USE_EXTERNAL_MODULES": "other.mod", "OUT": "rel"}
    cluster = launch.Cluster(2, 8)
    env = launch.forwarded_env(recipe, environ, [], {"HF_HOME": "/hf"}, cluster, "/abs/out")
    assert env["MODEL"] == "/m" and env["CHECKPOINT_DIR"] == "/ck" and env["LOGGER"] == "[console]"
    assert "PATH" not in env and "UNRELATED" not in env  # node-local / not the recipe's
    assert "HF_TOKEN" not in env and "WANDB_API_KEY" not in env  # secrets only on request
    assert (env["NNODES"], env["GPUS_PER_NODE"], env["OUT"]) == ("2", "8", "/abs/out")
    assert env["VERL_USE_EXTERNAL_MODULES"] == "other.mod,verl_difficulty.plugin" and env["HF_HOME"] == "/hf"
    assert "VERL_PLATFORM" not in env and "VERL_FILE_LOGGER_PATH" not in env
    env = launch.forwarded_env(recipe, {**environ, "REHEARSAL": "cpu"}, ["WANDB_API_KEY"], {}, cluster, "/o", "demo")
    assert env["WANDB_API_KEY"] == "k" and env["REHEARSAL"] == "cpu" and env["VERL_PLATFORM"] == "cpu"
    # where the recipe's run writes, for verl's trainer actor that does not inherit the recipe's shell
    assert env["VERL_FILE_LOGGER_ROOT"] == "/o/demo" and env["VERL_FILE_LOGGER_PATH"].startswith("/o/demo/")
    assert launch.withheld_secrets(recipe, environ, []) == ["HF_TOKEN"]  # the recipe reads it; the launcher says so
    assert launch.withheld_secrets(recipe, environ, ["HF_TOKEN"]) == []
    assert launch.SECRET.search("TASK_KEY") is None  # a recipe setting, not a credential
    with pytest.raises(launch.LaunchError, match="NOT_SET"):
        launch.forwarded_env(recipe, environ, ["NOT_SET"], {}, cluster, "/o")


def test_entrypoints_and_logger(recipe, tmp_path):
    repo = tmp_path
    assert launch.job_entrypoint(recipe, ["a=1"], "working_dir", repo) == ["bash", "recipes/demo/run.sh", "a=1"]
    assert launch.job_entrypoint(recipe, [], "installed", repo) == ["bash", str(recipe)]
    assert launch.recipe_script("demo", repo) == recipe
    with pytest.raises(launch.LaunchError, match="recipes: demo"):
        launch.recipe_script("nope", repo)
    assert launch.logger_of(["trainer.logger=[console]", "+trainer.logger=[wandb]"], {}) == "[wandb]"
    assert launch.logger_of([], {"LOGGER": "[console,wandb]"}) == "[console,wandb]"
    assert launch.runtime_env({"A": "1"}, "installed") == {"env_vars": {"A": "1"}}
    assert launch.runtime_env({}, "working_dir", repo)["working_dir"] == str(repo)
