"""torchrun's processes leave the process group they joined (a gloo group alive while Python
finalizes can abort the process), and leave one their caller made to the caller."""
import socket

import pytest
import torch.distributed

from kgqa.process_group import join, leave, shard


@pytest.fixture
def one_process_world(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}.items():
        monkeypatch.setenv(name, value)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def test_the_shard_is_read_from_torchrun_s_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard() == (1, 3)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert shard() == (0, 1)


def test_a_group_joined_here_is_destroyed_on_leaving(one_process_world):
    join("gloo")
    assert torch.distributed.is_initialized()
    join("gloo")  # joined already: nothing more
    leave()
    assert not torch.distributed.is_initialized()
    leave()  # no group: nothing to do


def test_a_group_the_caller_made_is_left_to_the_caller(one_process_world):
    torch.distributed.init_process_group("gloo")
    join("gloo")
    leave()
    assert torch.distributed.is_initialized()
