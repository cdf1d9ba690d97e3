"""``[target_engine]`` options of the sglang engine are validated strictly, with the fix in the message."""

from __future__ import annotations

import pytest

from specforge.errors import ConfigError
from specforge.options import build_options
from specforge_sglang.options import SGLangEngineOptions


def opts(**values) -> SGLangEngineOptions:
    return build_options(SGLangEngineOptions, values, "target_engine")


def test_defaults_start_sglang_in_process_with_binary_transport() -> None:
    o = opts()
    assert o.server_url == "" and o.uses_shm


def test_a_server_url_defaults_to_json_unless_a_shm_dir_is_shared() -> None:
    assert not opts(server_url="http://h:30000").uses_shm
    assert opts(server_url="http://h:30000", shm_dir="/dev/shm/x").uses_shm
    assert not opts(transport="json").uses_shm


def test_capture_layers_become_a_tuple() -> None:
    assert opts(capture_layers=[3, 0, 2]).capture_layers == (3, 0, 2)


@pytest.mark.parametrize(("values", "fragment"), [
    ({"transport": "grpc"}, "auto, json, shm"),
    ({"server_url": "localhost:30000"}, "http://"),
    ({"server_url": "http://h:1", "transport": "shm"}, "shm_dir"),
    ({"capture_layers": [1, 1]}, "distinct"),
    ({"capture_layers": [-1]}, "non-negative"),
    ({"batch_size": 0}, "batch_size"),
    ({"mem_fraction_static": 1.5}, "(0, 1)"),
    ({"engine_args": {"model_path": "x"}}, "model_path"),
    ({"engine_args": {"disable_radix_cache": False}}, "disable_radix_cache"),
    ({"batchsize": 4}, "did you mean 'batch_size'"),
    ({"capture_layers": "0,1"}, "expected a list"),
])
def test_bad_options_are_refused_naming_the_key(values: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        opts(**values)
    assert fragment in str(err.value)


def test_extra_engine_args_pass_through() -> None:
    assert opts(engine_args={"log_level": "error"}).engine_args == {"log_level": "error"}
