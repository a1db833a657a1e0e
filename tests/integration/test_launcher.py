"""`trenchcoat up` / `status` / `demo` as a person runs them: real processes, real signals."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness, upctl
from tests.upctl import SMALL, Up, cli, env, running_up
from trenchcoat.ops import proc_tree

# `trenchcoat up` and the demo on the default ports: one at a time (make test runs two workers).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(name="default-ports")]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = harness.open_tempdir("tc-up-")
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def up(data_dir: Path) -> Iterator[Up]:
    """A running `trenchcoat up` (small: ``SMALL``) of this test's own: it stops or breaks it."""
    with running_up(data_dir, SMALL) as running:
        yield running


def test_a_crashed_process_is_reported_not_hidden(up):
    redis = next(p for p in up.state()["processes"] if p["name"] == "redis")
    os.kill(redis["pid"], signal.SIGKILL)
    line = up.wait_for("!! redis")
    assert "SIGKILL" in line
    result = cli(up.data_dir, "status")
    assert result.returncode == 1
    assert any(row.startswith("redis") and "EXITED" in row for row in result.stdout.splitlines())
    up.popen.send_signal(signal.SIGTERM)
    assert up.popen.wait(60) == 1  # a run during which something died does not end "clean"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_takes_everything_down(up, sig):
    pids = up.pids()
    up.popen.send_signal(sig)
    assert up.popen.wait(90) == 0
    assert proc_tree.group_members(pids) == []
    assert not (up.data_dir / "cluster.json").exists()
    assert cli(up.data_dir, "status").returncode == 3


def test_state_survives_a_restart_of_the_cluster(data_dir):
    """... its identities too: the first start makes the CA and every certificate in
    <data_dir>/tls (the default cluster.tls_dir), the second uses them as they are."""
    own_identities = {**SMALL, upctl.TLS_DIR_KEY: ""}
    first = Up(data_dir, own_identities)
    try:
        first.wait_for("made the cluster CA and identities in")
        first.wait_for("shard map made (v1): 0-4095 -> pg-")  # two instances, the shards split evenly
        first.wait_for("cluster up")
        first.popen.send_signal(signal.SIGINT)
        assert first.popen.wait(90) == 0
    finally:
        first.close()
    ca = (data_dir / "tls" / "ca.crt").read_bytes()
    assert (data_dir / "tls" / "ca.key").stat().st_mode & 0o077 == 0
    pg_version = next(data_dir.glob("postgres/PG_VERSION"), None)
    assert pg_version is not None, "PostgreSQL cluster lives under the data dir"
    second = Up(data_dir, own_identities)
    try:
        second.wait_for("shard map kept (v1)")
        second.wait_for("cluster up")  # no initdb the second time: same cluster reused
        assert not any("made the cluster CA" in line for line in second.seen)
        assert (data_dir / "tls" / "ca.crt").read_bytes() == ca
        second.popen.send_signal(signal.SIGINT)
        assert second.popen.wait(90) == 0
    finally:
        second.close()


def test_status_without_a_cluster_says_so(data_dir):
    result = cli(data_dir, "status")
    assert result.returncode == 3
    assert "no cluster running" in result.stdout


def test_demo_runs_and_leaves_nothing_behind(data_dir):
    result = cli(data_dir, "demo", timeout=900, whole=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no process left running" in result.stdout
    assert "== the warm tier" in result.stdout, result.stdout
    assert "== the warm tier: skipped" not in result.stdout, result.stdout
    # Healing shown: rot found by the audit and mended, the killed store replaced.
    assert "== bit rot: one byte of" in result.stdout and "healing: skipped" not in result.stdout, result.stdout
    assert "never comes back" in result.stdout and "has 3 live replicas on 3 racks again" in result.stdout


def test_a_bad_config_exits_2_naming_the_key(data_dir, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nport = 'x'\n")
    result = cli(data_dir, "--config", str(bad), "status")
    assert result.returncode == 2
    assert "store.port: expected an integer" in result.stderr


def test_config_reference_lists_every_key_with_its_variable(data_dir):
    result = cli(data_dir, "config", "--reference")
    assert result.returncode == 0
    assert "store.racks = [\"rack-a\", \"rack-b\", \"rack-c\"]" in result.stdout
    assert "env: TRENCHCOAT_STORE__RACKS" in result.stdout


def test_get_refuses_to_write_a_media_to_a_terminal_and_sizes_are_image_sizes(data_dir):
    # No cluster needed: both are refused before anything is asked.
    controller, terminal = pty.openpty()
    try:
        refused = subprocess.run([sys.executable, "-m", "trenchcoat", "get", "123"], env=env(data_dir),
                                 stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60,
                                 cwd=harness.REPO_ROOT, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
    assert refused.returncode == 2
    assert "not writing a media's bytes to a terminal: give -o FILE, or redirect stdout" in refused.stderr
    bad = cli(data_dir, "get", "123", "--size", "256", "-o", "x")
    assert bad.returncode == 2 and "an image size is its alternate key, 1..255" in bad.stderr
    both = cli(data_dir, "get", "123", "--size", "2", "--key", "0x3000000", "-o", "x")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    bad = cli(data_dir, "get", "123", "--key", "poster", "-o", "x")
    assert bad.returncode == 2 and "an alternate key is 1..4294967295 (decimal or 0x hex)" in bad.stderr
