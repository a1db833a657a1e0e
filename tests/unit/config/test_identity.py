"""trenchcoat.config.identity: a StatefulSet pod's ordinal fills in the identity keys left to it,
and only those."""

from __future__ import annotations

import pytest

from trenchcoat import config
from trenchcoat.errors import ConfigError

LEFT_TO_THE_POD = {"TRENCHCOAT_STORE__MACHINE_ID": "0", "TRENCHCOAT_STORE__RACK": "",
                   "TRENCHCOAT_F4_STORAGE__NODE_ID": "0"}


def test_the_ordinal_fills_in_the_keys_left_to_it():
    c = config.load(None, {**LEFT_TO_THE_POD, "HOSTNAME": "store-4"})
    assert (c.store.machine_id, c.store.rack, c.f4_storage.node_id) == (5, "rack-b", 5)


def test_keys_set_explicitly_are_kept():
    c = config.load(None, {"TRENCHCOAT_STORE__MACHINE_ID": "9", "HOSTNAME": "store-4"})
    assert (c.store.machine_id, c.store.rack, c.f4_storage.node_id) == (9, "rack-a", 1)


def test_a_host_name_without_an_ordinal_names_the_keys_waiting_for_one():
    with pytest.raises(ConfigError, match=r"store.machine_id, store.rack, f4_storage.node_id .*'laptop'"):
        config.load(None, {**LEFT_TO_THE_POD, "HOSTNAME": "laptop"})


@pytest.mark.parametrize(("hostname", "ordinal"), [("store-0", 0), ("f4-storage-13", 13), ("store", None),
                                                    ("router-5f7c9d8b4-x2k9p", None), ("Store-1", None)])
def test_pod_ordinal(hostname, ordinal):
    assert config.pod_ordinal(hostname) == ordinal
