"""Both transports carry the same numbers: JSON float lists and the capture class's binary rows."""

from __future__ import annotations

import torch
from harness_settings import DEVICE

from specforge.contracts import FeatureRequest, Sample
from specforge.testing.engine_kit import kit_samples
from specforge_sglang.capture_plan import RID_PREFIX
from specforge_sglang.transport import read_rows, rows_from_json


def test_one_request_returns_identical_rows_as_json_and_as_binary(sglang_engine) -> None:
    engine = sglang_engine
    engine.capture([Sample("warm", (1, 2, 3), (1, 1, 1))], FeatureRequest(layers=(0,)))  # SGLang is up
    plan, backend = engine._plan, engine._backend
    prompts = [list(s.input_ids) for s in kit_samples(259, lengths=(7, 1, 12))]
    rids = [f"{RID_PREFIX}transport-{k}" for k in range(len(prompts))]
    width = plan.num_blocks * engine.info().hidden_size
    outs = backend.generate(prompts, [{"temperature": 0.0, "max_new_tokens": 1}] * 3, rids=rids,
                            return_hidden_states=True)
    for rid, prompt, out in zip(rids, prompts, outs):
        binary = read_rows(plan.shm_dir, rid, num_tokens=len(prompt), width=width, dtype=torch.float32)
        as_json = rows_from_json(out["meta_info"]["hidden_states"], rid=rid, num_tokens=len(prompt), width=width,
                                 dtype=torch.float32)
        assert torch.equal(binary, as_json)


def test_the_server_path_captures_what_the_in_process_engine_captures(sglang_server, sglang_engine,
                                                                      harness_target_dir) -> None:
    from specforge_sglang.engine import SGLangEngine
    from specforge_sglang.options import SGLangEngineOptions

    request = FeatureRequest(layers=(4, 1), last_hidden=True)
    samples = kit_samples(259, lengths=(9, 1, 5))
    want = sglang_engine.capture(samples, request)
    for transport, shm in (("json", ""), ("shm", str(sglang_server.shm_dir))):
        remote = SGLangEngine(SGLangEngineOptions(server_url=sglang_server.url, transport=transport, shm_dir=shm,
                                                  capture_layers=sglang_server.layers),
                              model_path=str(harness_target_dir), dtype="float32", device=DEVICE)
        try:
            got = remote.capture(samples, request)
            assert remote.generate([list(samples[0].input_ids)], 4) == sglang_engine.generate(
                [list(samples[0].input_ids)], 4)
        finally:
            remote.close()
        for g, w in zip(got, want):
            for name in ("hidden_states", "last_hidden"):
                torch.testing.assert_close(g[name], w[name], atol=1e-6, rtol=1e-6, msg=f"{transport} {name}")
