"""node/parent.py: a devnet's nodes stop with the devnet."""

from __future__ import annotations

import ctypes
import os

import pytest

from swarmd.node.cli.common import CliError
from swarmd.node.cli.parent import EXIT_WITH_PARENT_ENV, PR_SET_PDEATHSIG, exit_with_parent


def test_nothing_is_asked_without_the_setting() -> None:
    assert exit_with_parent({}) is False
    assert exit_with_parent({EXIT_WITH_PARENT_ENV: ""}) is False


def test_a_malformed_setting_is_a_typed_error() -> None:
    with pytest.raises(CliError) as caught:
        exit_with_parent({EXIT_WITH_PARENT_ENV: "not-a-pid"})
    assert caught.value.code == "bad_environment"


def test_a_node_whose_starter_is_gone_refuses_to_start() -> None:
    with pytest.raises(CliError) as caught:
        exit_with_parent({EXIT_WITH_PARENT_ENV: str(os.getppid() + 1_000_000)})
    assert caught.value.code == "orphaned"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="prctl PR_SET_PDEATHSIG")
def test_the_real_parent_is_accepted() -> None:
    try:
        assert exit_with_parent({EXIT_WITH_PARENT_ENV: str(os.getppid())}) is True
    finally:  # the test process itself should not keep the death signal
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
