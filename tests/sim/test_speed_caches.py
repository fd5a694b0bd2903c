"""Speed-ups of the simulator's hot paths that must not change a result: the verification
cache (crypto.VerifiedCache) answers a repeated successful verification without libsodium and
never turns a failing one into a passing one; `addresses.url_group` remembers the groups of
URLs; a consensus message is packed directly, to the bytes the generic encoder gives."""

from __future__ import annotations

import pytest

from swarmd.protocol import crypto, encoding
from swarmd.protocol.addresses import url_group
from swarmd.protocol.errors import BadSignatureError, LocalProtocolError
from swarmd.protocol.limits import ADDRESS_GROUP_CACHE_ENTRIES_MAX
from swarmd.protocol.messages import ConsensusEnvelope, MessageType, decode_message, encode_message
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.simulator import SIM_VERIFIED_CACHE_ENTRIES_MAX

KEY = crypto.KeyPair.from_seed(crypto.sha256(b"verified-cache"))


def signed(message: bytes) -> bytes:
    return KEY.sign(message) + message


def test_a_repeated_verification_is_a_hit_and_a_bad_signature_still_fails() -> None:
    cache = crypto.VerifiedCache(4)
    good = signed(b"pay 10")
    forged = bytes([good[0] ^ 1]) + good[1:]
    with crypto.remembering_verifications(cache):
        crypto.verify_signed(KEY.public_key, good)
        crypto.verify_signed(KEY.public_key, good)
        assert cache.hits == 1
        # The same message under another signature, and the same bytes under another key.
        with pytest.raises(BadSignatureError):
            crypto.verify_signed(KEY.public_key, forged)
        other = crypto.KeyPair.from_seed(crypto.sha256(b"other")).public_key
        with pytest.raises(BadSignatureError):
            crypto.verify_signed(other, good)
        assert not crypto.is_valid_signature(KEY.public_key, b"pay 11", good[:64])
    assert len(cache.digests) == 1 and cache.hits == 1


def test_outside_the_block_nothing_is_remembered() -> None:
    cache = crypto.VerifiedCache(4)
    good = signed(b"outside")
    with crypto.remembering_verifications(cache):
        pass
    crypto.verify_signed(KEY.public_key, good)
    assert not cache.digests


def test_a_full_cache_starts_over() -> None:
    cache = crypto.VerifiedCache(2)
    messages = [signed(bytes([i])) for i in range(3)]
    with crypto.remembering_verifications(cache):
        for data in messages:
            crypto.verify_signed(KEY.public_key, data)
        assert len(cache.digests) == 1  # the third found it full and started over
        crypto.verify_signed(KEY.public_key, messages[2])
        crypto.verify_signed(KEY.public_key, messages[0])  # forgotten: verified again
    assert cache.hits == 1 and len(cache.digests) == 2
    with pytest.raises(LocalProtocolError):
        crypto.VerifiedCache(0)


def test_a_scenario_answers_most_verifications_from_its_cache() -> None:
    swarm = scenarios.build_swarm("test", 1, scenarios.ScenarioParams())
    swarm.workload.grant(swarm.workload.new_account(), node=0)
    swarm.sim.run_until(5.0)
    cache = swarm.sim.verified
    assert cache.entries_max == SIM_VERIFIED_CACHE_ENTRIES_MAX
    # Five nodes verify the same votes and bundles: most verifications repeat one.
    assert cache.hits > len(cache.digests) > 0


def test_url_groups_are_remembered_up_to_the_bound_and_equal_a_fresh_parse() -> None:
    urls = [
        f"wss://10.{i // 256}.{i % 256}.1:7000/" for i in range(ADDRESS_GROUP_CACHE_ENTRIES_MAX + 1)
    ]
    for url in urls:
        assert url_group(url) == url_group.__wrapped__(url)
    assert url_group.cache_info().currsize == ADDRESS_GROUP_CACHE_ENTRIES_MAX
    before = url_group.cache_info()
    assert url_group(urls[-1]) == "private:10.16.0.0/16"  # the newest: remembered
    assert url_group(urls[0]) == "private:10.0.0.0/16"  # the oldest: evicted, parsed again
    after = url_group.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    assert url_group("wss://[2a01:4f8::1]:7000/") == "public:2a01:4f8::/32"
    assert url_group("wss://node.example.org/") == "public:example.org"


def test_the_consensus_fast_path_encodes_as_the_generic_encoder() -> None:
    for payload in (b"", b"\x00" * 31, b"\xff" * 300, bytes(range(256)) * 300):
        fast = encode_message(ConsensusEnvelope(payload))
        assert fast == encoding.encode([MessageType.CONSENSUS, payload])
        assert decode_message(fast) == ConsensusEnvelope(payload)
