"""The browser's encoder, signer, account ids and bundle check produce exactly the bytes of
tests/vectors/canonical.json (which tests/vectors/test_vectors.py holds to the Python code)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.vectors.make_vectors import VECTOR_FILE

from .conftest import screenshot

pytestmark = pytest.mark.integration

CHECK_VECTORS_JS = """
async (vectors) => {
  const { canonical, bytes, keys, ops } = window.swarmd;
  const failures = [];
  const untag = (tagged) => {
    const [[name, item]] = Object.entries(tagged);
    if (name === "int") {
      const big = BigInt(item);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(big) : big;
    }
    if (name === "bytes") return bytes.fromHex(item);
    if (name === "list") return item.map(untag);
    if (name === "map") return new Map(item.map(([key, value]) => [key, untag(value)]));
    if (name === "nil") return null;
    return item;
  };
  for (const c of vectors.values) {
    const got = bytes.toHex(canonical.encode(untag(c.value)));
    if (got !== c.hex) failures.push(`encode ${c.hex.slice(0, 24)}: got ${got.slice(0, 24)}`);
    const again = bytes.toHex(canonical.encode(canonical.decode(bytes.fromHex(c.hex))));
    if (again !== c.hex) failures.push(`decode ${c.hex.slice(0, 24)}`);
  }
  for (const hex of vectors.non_canonical) {
    try { canonical.decode(bytes.fromHex(hex)); failures.push(`accepted ${hex}`); } catch {}
  }
  for (const c of vectors.ops) {
    const fields = Object.fromEntries(untag(c.fields));
    const publicKey = await keys.parseAccountId(c.author);
    const signer = await keys.importSeed(bytes.fromHex(c.seed), publicKey);
    const op = await ops.buildOp(signer, bytes.fromHex(c.network_id), c.kind, fields);
    if (bytes.toHex(op.body) !== c.body) failures.push(`body ${c.label}`);
    if (bytes.toHex(op.signature) !== c.signature) failures.push(`signature ${c.label}`);
    if (bytes.toHex(op.envelope) !== c.envelope) failures.push(`envelope ${c.label}`);
    if (bytes.toHex(op.opId) !== c.op_id) failures.push(`op id ${c.label}`);
    if (ops.Kind[c.label] !== c.kind) failures.push(`kind ${c.label}`);
  }
  for (const c of vectors.accounts) {
    const text = await keys.accountIdText(bytes.fromHex(c.public_key));
    if (text !== c.account_id) failures.push(`account id ${c.account_id}`);
    if (bytes.toHex(await keys.parseAccountId(c.account_id)) !== c.public_key) {
      failures.push(`parse ${c.account_id}`);
    }
    const typo = c.account_id.slice(0, -1) + (c.account_id.endsWith("a") ? "b" : "a");
    try { await keys.parseAccountId(typo); failures.push(`typo accepted ${typo}`); } catch {}
  }
  for (const c of vectors.key_files) {
    const record = await keys.importKeyFile(c.text);
    if (await keys.accountIdText(record.publicKey) !== c.account_id) failures.push("key file");
    if (record.privateKey.extractable) failures.push("imported key is extractable");
  }
  const cp = vectors.checkpoint;
  const genesis = JSON.parse(cp.genesis_json);
  const council = [];
  for (const member of genesis.council) council.push(await keys.parseAccountId(member));
  const networkId = await ops.networkIdOf({ ...genesis, council });
  if (bytes.toHex(networkId) !== cp.network_id) failures.push("genesis network id");
  const good = await ops.verifyBundle(bytes.fromHex(cp.bundle), networkId, council);
  if (!good.ok || good.signers.length !== 3) failures.push(`bundle: ${good.reason}`);
  const forged = await ops.verifyBundle(bytes.fromHex(cp.forged_bundle), networkId, council);
  if (forged.ok) failures.push("forged bundle verified");
  const fewer = await ops.verifyBundle(bytes.fromHex(cp.bundle), networkId, council.slice(1));
  if (fewer.ok) failures.push("bundle verified against the wrong council");
  return failures;
}
"""


def test_browser_encoder_matches_the_shared_vectors(chromium: Any, devnet: dict[str, Any]) -> None:
    page = chromium.new_page()
    page.goto(devnet["nodes"][0]["api_url"] + "/")
    page.wait_for_selector("body[data-ready=true]")
    vectors = page.evaluate("(text) => JSON.parse(text)", VECTOR_FILE.read_text())
    assert page.evaluate(CHECK_VECTORS_JS, vectors) == []
    screenshot(page, "01-first-visit")
    page.close()
