from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelport import config
from modelport.runtime.environments import (
    ENV_MANAGERS,
    MARKER,
    EnvironmentBuilder,
    EnvironmentBuildFailed,
    activate,
    env_manager_of,
    environment_key,
    last_error_line,
    requirement_names,
    worker_requirements,
)
from modelport.runtime.logs import BuildLog

OWN = {"orjson": "orjson>=3.10", "mlflow": "mlflow==3.17.2"}


def key(**over: object) -> str:
    args: dict[str, object] = {
        "requirements": "mlflow==3.17.2\nscikit-learn\n",
        "constraints": "",
        "python": "cpython-3.11.7",
        "extras": ["orjson>=3.10", "numpy", "pandas"],
        "package_dir": "/srv/modelport",
    }
    args.update(over)
    return environment_key(**args)  # type: ignore[arg-type]


def test_entity_without_the_variable_takes_the_server_default() -> None:
    assert env_manager_of({"name": "m"}, "local") == "local"
    assert env_manager_of({"name": "m", "environment_vars": {"OTHER": "1"}}, "uv") == "uv"


def test_entity_variable_overrides_the_server_default() -> None:
    assert env_manager_of({"environment_vars": {"MODELPORT_ENV_MANAGER": "uv"}}, "local") == "uv"
    assert env_manager_of({"environment_vars": {"MODELPORT_ENV_MANAGER": "local"}}, "uv") == "local"


def test_server_setting_and_entity_variable_allow_the_same_values() -> None:
    assert config.ENV_MANAGERS == ENV_MANAGERS == ("local", "uv")


def test_env_manager_setting_is_validated() -> None:
    assert config.Settings.load(environ={}).env_manager == "local"
    assert config.Settings.load(environ={"MODELPORT_ENV_MANAGER": "uv"}).env_manager == "uv"
    with pytest.raises(ValueError, match="--env-manager must be local or uv, not 'conda'"):
        config.Settings.load({"env_manager": "conda"}, environ={})


def test_requirement_names_are_canonical_and_skip_options_paths_and_urls() -> None:
    text = (
        "# logged by mlflow\n"
        "mlflow==3.17.2\n"
        "Scikit_Learn>=1.4  # comment\n"
        "torch[cpu] ; python_version >= '3.10'\n"
        "-r other.txt\n"
        "--index-url https://example.invalid/simple\n"
        "./wheels/local.whl\n"
        "git+https://example.invalid/org/repo.git@v1\n"
        "mypkg @ https://example.invalid/mypkg.whl\n"
    )
    assert requirement_names(text) == {"mlflow", "scikit-learn", "torch", "mypkg"}


def test_worker_needs_orjson_numpy_pandas_and_the_models_own_mlflow() -> None:
    assert worker_requirements("mlflow==2.9.0\n", OWN) == ["orjson>=3.10", "numpy", "pandas"]
    assert worker_requirements("mlflow-skinny\n", OWN) == ["orjson>=3.10", "numpy", "pandas"]


def test_worker_adds_the_servers_mlflow_when_the_model_names_none() -> None:
    assert worker_requirements("scikit-learn\n", OWN) == ["orjson>=3.10", "numpy", "pandas", "mlflow==3.17.2"]


def test_key_is_stable_and_short() -> None:
    # A literal: the key names a folder on disk, so it must not change between processes
    # (no salted hash()) nor between releases that put the same things into an environment.
    assert key() == "6b04b1ed3ed73ae6"


@pytest.mark.parametrize(
    "change",
    [
        {"requirements": "mlflow==3.17.2\nscikit-learn==1.5.0\n"},
        {"constraints": "numpy<2\n"},
        {"python": "cpython-3.12.1"},
        {"extras": ["orjson>=3.11", "numpy", "pandas"]},
        {"package_dir": "/opt/other/modelport"},
    ],
)
def test_key_changes_with_everything_that_goes_into_an_environment(change: dict[str, object]) -> None:
    assert key(**change) != key()


def test_last_error_line_is_uvs_innermost_cause_not_its_hint() -> None:
    output = (
        "Using Python 3.11.7 environment at: /x\n"
        "error: No solution found when resolving dependencies:\n"
        "  cause: Because nope was not found in the package registry, we can conclude ...\n"
        "\n"
        "hint: Consider ...\n"
    )
    assert last_error_line(output) == (
        "cause: Because nope was not found in the package registry, we can conclude ..."
    )
    assert last_error_line("something odd\n\n") == "something odd"
    assert last_error_line("") == "uv printed nothing"


def test_activate_puts_the_env_first_and_drops_the_servers_python_path() -> None:
    base = {"PATH": "/usr/bin", "PYTHONPATH": "/srv/src", "HOME": "/root"}
    env = activate(base, Path("/envs/abc"), {})
    assert env == {
        "PATH": "/envs/abc/bin:/usr/bin",
        "HOME": "/root",
        "VIRTUAL_ENV": "/envs/abc",
        "PYTHONSAFEPATH": "1",
    }
    assert activate(base, Path("/envs/abc"), {"PYTHONPATH": "/srv/src"})["PYTHONPATH"] == "/srv/src"


def model_folder(tmp_path: Path, requirements: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "requirements.txt").write_text(requirements)
    return folder


def test_same_requirements_share_one_environment(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs", {})
    a = model_folder(tmp_path / "a", "mlflow==3.17.2\n")
    b = model_folder(tmp_path / "b", "mlflow==3.17.2\n")
    c = model_folder(tmp_path / "c", "mlflow==3.17.2\nscikit-learn\n")
    assert builder.env_dir(a) == builder.env_dir(b) != builder.env_dir(c)
    assert builder.env_dir(a).parent == tmp_path / "envs"


def test_a_complete_environment_is_reused_without_running_uv(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs", {}, uv="/nonexistent/uv")
    model = model_folder(tmp_path, "mlflow==3.17.2\n")
    env = builder.env_dir(model)
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").touch()
    (env / MARKER).write_text(json.dumps({"built_at": "2026-01-02 03:04:05 UTC"}))
    log = BuildLog(tmp_path / "build.log")
    assert builder.ensure(model, log) == env / "bin" / "python"
    text = log.path.read_text()
    assert f"Reusing environment {env.name} built 2026-01-02 03:04:05 UTC." in text
    assert f"Replicas run {env}/bin/python." in text


class CountingBuilder(EnvironmentBuilder):
    """Builds a stand-in environment (no uv, no processes), slowly, counting the builds."""

    builds = 0

    def _build(self, uv: str, model_dir: Path, temp: Path, key: str, log: BuildLog) -> None:
        type(self).builds += 1
        (temp / "bin").mkdir(parents=True)
        time.sleep(0.2)
        (temp / "bin" / "python").touch()
        (temp / MARKER).write_text(json.dumps({"built_at": "now"}))


def test_concurrent_ensures_of_one_environment_build_it_once(tmp_path: Path) -> None:
    builder = CountingBuilder(tmp_path / "envs", {}, uv="/nonexistent/uv")
    model = model_folder(tmp_path, "mlflow==3.17.2\n")
    logs = [BuildLog(tmp_path / f"build-{i}.log") for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        pythons = list(pool.map(lambda log: builder.ensure(model, log), logs))
    assert CountingBuilder.builds == 1
    assert pythons == [builder.env_dir(model) / "bin" / "python"] * 3
    # The stand-in build writes nothing: only the two that waited have a log.
    texts = [log.path.read_text() if log.path.exists() else "" for log in logs]
    assert sum("Reusing environment" in t for t in texts) == 2
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [
        builder.key(model),
        f"{builder.key(model)}.lock",
    ]


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    class Failing(EnvironmentBuilder):
        def _build(self, uv: str, model_dir: Path, temp: Path, key: str, log: BuildLog) -> None:
            (temp / "bin").mkdir(parents=True)
            raise EnvironmentBuildFailed("uv could not build the model's environment: cause: nope")

    builder = Failing(tmp_path / "envs", {}, uv="/nonexistent/uv")
    model = model_folder(tmp_path, "nope==1\n")
    with pytest.raises(EnvironmentBuildFailed, match="cause: nope"):
        builder.ensure(model, BuildLog(tmp_path / "build.log"))
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [f"{builder.key(model)}.lock"]
