"""trenchcoat.config.checks: the one checker of declared bounds. Every kind of bound refuses a
value outside it with a message naming the key and the value, and lets the edge through."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from trenchcoat.config.checks import Section, check_bounds, check_section, is_host_port
from trenchcoat.config.setting import HOST_PORT, Bounds, setting
from trenchcoat.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample(Section):
    """A section with a key of every kind of bound."""

    count: int = setting("ge", default=1, ge=0)
    timeout_s: float = setting("gt", default=1.0, gt=0)
    most: int = setting("le", default=5, le=10)
    threads: int = setting("ge and le", default=4, ge=1, le=256)
    ratio: float = setting("gt and le", default=0.5, gt=0, le=1)
    level: str = setting("choices", default="INFO", choices=("DEBUG", "INFO"))
    name: str = setting("nonempty", default="x", nonempty=True)
    url: str = setting("prefixes", default="http://x", prefixes=("http://", "https://"))
    dsn: str = setting("prefixes or empty", default="", prefixes=("postgresql://",), or_empty=True)
    endpoint: str = setting("host_port", default="h:1", host_port=True)
    advertise: str = setting("host_port or empty", default="", host_port=True, or_empty=True)
    disk: int = setting("why", default=1 << 20, ge=1 << 20, why="1 MiB")
    racks: tuple[str, ...] = setting("a list", default=("a",), nonempty=True, distinct=True,
                                     each=Bounds(nonempty=True))
    rungs: tuple[int, ...] = setting("a list of numbers", default=(240,), each=Bounds(ge=16, le=4320))
    endpoints: tuple[str, ...] = setting("a list of addresses", default=(), each=HOST_PORT)
    label: str = setting("free", default="", free="any label")


def refusal(**values: Any) -> str:
    with pytest.raises(ConfigError) as info:
        check_bounds("sample", dataclasses.replace(Sample(), **values))
    return str(info.value)


def test_the_defaults_pass():
    check_bounds("sample", Sample())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": -1}, "sample.count: must be >= 0, got -1"),
        ({"timeout_s": 0.0}, "sample.timeout_s: must be > 0, got 0.0"),
        ({"most": 11}, "sample.most: must be at most 10, got 11"),
        ({"threads": 0}, "sample.threads: must be in 1..256, got 0"),
        ({"threads": 257}, "sample.threads: must be in 1..256, got 257"),
        ({"ratio": 0.0}, "sample.ratio: must be in (0, 1], got 0.0"),
        ({"ratio": 1.5}, "sample.ratio: must be in (0, 1], got 1.5"),
        ({"level": "LOUD"}, "sample.level: must be one of DEBUG, INFO, got 'LOUD'"),
        ({"level": ""}, "sample.level: must be one of DEBUG, INFO, got ''"),
        ({"name": ""}, "sample.name: must not be empty, got ''"),
        ({"url": "ftp://x"}, "sample.url: must start with http:// or https://, got 'ftp://x'"),
        ({"url": ""}, "sample.url: must start with http:// or https://, got ''"),
        ({"dsn": "mysql://x"}, "sample.dsn: must start with postgresql://, got 'mysql://x'"),
        ({"endpoint": "nohost"}, "sample.endpoint: 'nohost' is not host:port"),
        ({"endpoint": ""}, "sample.endpoint: '' is not host:port"),
        ({"advertise": "h:0"}, "sample.advertise: 'h:0' is not host:port"),
        ({"disk": 1024}, "sample.disk: must be >= 1048576 (1 MiB), got 1024"),
        ({"racks": ()}, "sample.racks: must not be empty, got []"),
        ({"racks": ("a", "b", "a")}, "sample.racks: names 'a' twice, got ['a', 'b', 'a']"),
        ({"racks": ("a", "")}, "sample.racks[1]: must not be empty, got ''"),
        ({"rungs": (240, 8)}, "sample.rungs[1]: must be in 16..4320, got 8"),
        ({"endpoints": ("h:1", "h:70000")}, "sample.endpoints[1]: 'h:70000' is not host:port"),
    ],
)
def test_a_value_outside_its_bounds_is_refused_naming_the_key_and_the_value(values, message):
    assert refusal(**values) == message


@pytest.mark.parametrize(
    "values",
    [
        {"count": 0}, {"timeout_s": 1e-9}, {"most": 10}, {"threads": 1}, {"threads": 256}, {"ratio": 1.0},
        {"level": "DEBUG"}, {"url": "https://x"}, {"dsn": ""}, {"dsn": "postgresql://u@h/db"},
        {"advertise": ""}, {"advertise": "10.0.0.1:7200"}, {"endpoint": "::1:7200"}, {"disk": 1 << 20},
        {"racks": ("a", "b")}, {"rungs": ()}, {"rungs": (16, 4320)}, {"endpoints": ()},
        {"label": "anything at all"},
    ],
)
def test_a_value_on_the_edge_of_its_bounds_passes(values):
    check_bounds("sample", dataclasses.replace(Sample(), **values))


def test_not_a_number_is_outside_every_range():
    # float("nan") is what TRENCHCOAT_..._S=nan parses to; every comparison with it is false.
    assert refusal(timeout_s=float("nan")) == "sample.timeout_s: must be > 0, got nan"
    assert "sample.ratio: must be in (0, 1]" in refusal(ratio=float("nan"))


def test_the_first_key_out_of_bounds_is_named():
    assert refusal(count=-1, name="").startswith("sample.count:")


def test_a_section_checks_its_bounds_before_its_relations() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Pair(Section):
        low: int = setting("at least 0", default=0, ge=0)
        high: int = setting("at least 0", default=1, ge=0)

        def validate(self, section: str) -> None:
            if self.high < self.low:
                raise ConfigError(f"{section}.high: must be >= low")

    with pytest.raises(ConfigError, match=r"^pair.low: must be >= 0, got -5$"):
        check_section("pair", Pair(low=-5, high=-9))
    with pytest.raises(ConfigError, match=r"^pair.high: must be >= low$"):
        check_section("pair", Pair(low=5, high=2))
    check_section("pair", Pair(low=2, high=5))


def test_a_setting_declares_bounds_or_why_it_is_free_not_both():
    with pytest.raises(TypeError):
        setting("both", default=1, ge=0, free="any")
    with pytest.raises(TypeError):
        Bounds(ge=0, gt=0)
    with pytest.raises(TypeError):
        setting("no such bound", default=1, at_least=0)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("h:1", True), ("h:65535", True), ("10.0.0.5:2379", True), ("::1:80", True),
     ("h", False), (":1", False), ("h:", False), ("h:0", False), ("h:65536", False), ("h:x", False), ("", False)],
)
def test_host_port(value, ok):
    assert is_host_port(value) is ok


def test_insecure_and_a_tls_directory_together_are_refused_and_the_default_is_tls():
    from trenchcoat import config as configmod

    default = configmod.load(env={"TRENCHCOAT_CLUSTER__DATA_DIR": "/d"})
    assert not default.cluster.insecure and str(default.cluster.tls_directory()) == "/d/tls"
    assert configmod.load(env={"TRENCHCOAT_CLUSTER__INSECURE": "true"}).cluster.tls_directory() is None
    with pytest.raises(ConfigError, match=r"cluster\.insecure: is true while cluster\.tls_dir is set \(/x\): choose one"):
        configmod.load(env={"TRENCHCOAT_CLUSTER__INSECURE": "true", "TRENCHCOAT_CLUSTER__TLS_DIR": "/x"})
