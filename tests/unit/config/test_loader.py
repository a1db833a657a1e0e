"""trenchcoat.config.loader: defaults, the file, env overrides, precise errors (through ``load``, so the
sections' checks are met here too; the checker itself is in test_checks.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trenchcoat import config
from trenchcoat.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "trenchcoat.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_example_config_loads_to_exactly_the_defaults():
    assert config.load(EXAMPLE) == config.Config()


def test_default_cluster_describes_the_documented_shape():
    c = config.Config()
    assert (c.directory.count, c.store.count, c.cache.count, c.router.count) == (2, 6, 1, 1)
    assert len(c.store.racks) == 3


def test_file_values_are_read(tmp_path):
    c = config.load(write(tmp_path, '[store]\ncount = 3\nracks = ["r1", "r2"]\n[cluster]\nname = "x"\n'))
    assert c.store.count == 3 and c.store.racks == ("r1", "r2") and c.cluster.name == "x"


def test_env_overrides_one_key_over_the_file(tmp_path):
    path = write(tmp_path, "[store]\nport = 7200\n")
    env = {
        "TRENCHCOAT_STORE__PORT": "7301",
        "TRENCHCOAT_STORE__RACKS": "a, b",
        "TRENCHCOAT_ETCD__ENDPOINTS": "h1:1,h2:2",
        "TRENCHCOAT_ROUTER__GRACE_PERIOD_S": "2.5",
        "TRENCHCOAT_CONFIG": "ignored-here",
        "UNRELATED": "x",
    }
    c = config.load(path, env)
    assert c.store.port == 7301
    assert c.store.racks == ("a", "b")
    assert c.etcd.endpoints == ("h1:1", "h2:2")
    assert c.router.grace_period_s == 2.5
    assert c.store.metrics_port == 9200


def test_env_key_names():
    assert config.env_key("store", "machine_id") == "TRENCHCOAT_STORE__MACHINE_ID"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[store]\nprot = 1\n", "store.prot: unknown key"),
        ("[stor]\nport = 1\n", "unknown section [stor]"),
        ("[store]\nport = \"7200\"\n", "store.port: expected an integer"),
        ("[store]\nport = true\n", "store.port: expected an integer"),
        ("[store]\nport = 70000\n", "store.port: must be in 1..65535"),
        ("[store]\ncount = -1\n", "store.count: must be >= 0"),
        ("[store]\nracks = []\n", "store.racks: must not be empty, got []"),
        ("[store]\nracks = [\"a\", \"a\"]\n", "store.racks: names 'a' twice"),
        ("[store]\nracks = [1]\n", "store.racks: expected a list of strings"),
        ("[cache]\nport = 7201\n", "port 7201 (cache.port) is also store.port + 1"),
        ("[cache]\nmetrics_port = 7100\n", "is also directory.port"),
        ("[cluster]\nlog_level = \"LOUD\"\n", "cluster.log_level"),
        ("[etcd]\nendpoints = [\"nohost\"]\n", "etcd.endpoints[0]: 'nohost' is not host:port"),
        ("[postgres]\ndsn = \"mysql://x\"\n", "postgres.dsn"),
        ("[router]\ngrace_period_s = -1\n", "router.grace_period_s: must be >= 0"),
        ("store = 3\n", "[store] must be a table"),
        ("[store\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key_and_why(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TRENCHCOAT_STORE__PORT": "abc"}, "store.port: expected an integer, got 'abc' (from TRENCHCOAT_STORE__PORT)"),
        ({"TRENCHCOAT_STORE__PROT": "1"}, "store.prot: unknown key (in TRENCHCOAT_STORE__PROT)"),
        ({"TRENCHCOAT_NOPE__PORT": "1"}, "unknown section [nope] (in TRENCHCOAT_NOPE__PORT)"),
        ({"TRENCHCOAT_STORE__MACHINE_ID": "-1"}, "store.machine_id: must be in 1..4294967295"),
    ],
)
def test_env_errors_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as info:
        config.load(None, env)
    assert needle in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_config_is_frozen() -> None:
    c = config.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.store.port = 1  # type: ignore[misc]  # (what the test proves refused)


def test_default_path_prefers_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.default_path({}) is None
    (tmp_path / "trenchcoat.toml").write_text("")
    assert config.default_path({}) == "trenchcoat.toml"
    assert config.default_path({"TRENCHCOAT_CONFIG": "/x.toml"}) == "/x.toml"


def test_a_moved_key_is_still_read_under_its_old_name_with_a_warning(tmp_path, caplog):
    old = write(tmp_path, '[router]\ndirectory_endpoints = ["d1:7100", "d2:7100"]\n'
                          '[feed]\nrouter_endpoints = ["r:7400"]\n')
    c = config.load(old)
    assert c.directory.endpoints == ("d1:7100", "d2:7100") and c.directory_endpoints() == ("d1:7100", "d2:7100")
    assert c.router.endpoints == ("r:7400",) and c.router_endpoints() == ("r:7400",)
    assert "router.directory_endpoints (in " in caplog.text and "is now directory.endpoints" in caplog.text
    caplog.clear()
    c = config.load(env={"TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS": "d3:7100"})
    assert c.directory.endpoints == ("d3:7100",)
    assert "TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS is now TRENCHCOAT_DIRECTORY__ENDPOINTS" in caplog.text


def test_a_moved_key_set_under_both_names_must_agree(tmp_path):
    same = write(tmp_path, '[router]\ndirectory_endpoints = ["d:1"]\n[directory]\nendpoints = ["d:1"]\n')
    assert config.load(same).directory.endpoints == ("d:1",)
    both = write(tmp_path, '[router]\ndirectory_endpoints = ["d:1"]\n[directory]\nendpoints = ["d:2"]\n')
    with pytest.raises(ConfigError, match=r"router.directory_endpoints .* keep only directory.endpoints"):
        config.load(both)
    with pytest.raises(ConfigError, match="keep only TRENCHCOAT_ROUTER__ENDPOINTS"):
        config.load(env={"TRENCHCOAT_FEED__ROUTER_ENDPOINTS": "a:1", "TRENCHCOAT_ROUTER__ENDPOINTS": "b:1"})
    with pytest.raises(ConfigError, match=r"directory.endpoints\[0\]"):  # the old name's value is checked as the new
        config.load(env={"TRENCHCOAT_ROUTER__DIRECTORY_ENDPOINTS": "nohost"})
