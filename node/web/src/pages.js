// The pages. Each is a function (root element) -> optional cleanup; all text goes through
// dom.h, so whatever another user wrote is shown as text.

import { api } from "./api.js";
import { fromHex, toHex, utf8 } from "./bytes.js";
import { field, h, replace, shortId } from "./dom.js";
import {
  exportKeyFile, forgetKey, generateKey, importKeyFile, parseAccountId, saveKey,
} from "./keys.js";
import { decodeCut, networkIdOf, verifyBundle } from "./ops.js";
import { onChange, resolveRecipient, solvePuzzle, submit, useKey, wallet } from "./wallet.js";

const BURN_TARGET_SIZE_BYTES_MAX = 128; // protocol/limits.py BURN_TARGET_SIZE_BYTES_MAX
const HANDLE_LENGTH_MIN = 3; // protocol/limits.py HANDLE_LENGTH_MIN
const HANDLE_LENGTH_MAX = 32; // protocol/limits.py HANDLE_LENGTH_MAX

// Amounts are integers up to 2**63-1: parsed to a BigInt, never through a float.
function parseAmount(text) {
  if (!/^[1-9][0-9]{0,18}$/.test(text.trim())) {
    throw new Error("amount must be a whole number from 1");
  }
  const amount = BigInt(text.trim());
  if (amount > 2n ** 63n - 1n) throw new Error("amount is too large");
  return amount;
}

// Burn targets are 1..128 bytes of UTF-8 (the input's maxlength counts UTF-16 units, not bytes).
function parseTarget(text) {
  const size = utf8(text).length;
  if (size === 0 || size > BURN_TARGET_SIZE_BYTES_MAX) {
    throw new Error(`target must be 1..${BURN_TARGET_SIZE_BYTES_MAX} bytes of UTF-8 ` +
      `(this one is ${size})`);
  }
  return text;
}

function message(kind, text) {
  return h("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

function needsKey(root) {
  replace(root, h("h2", {}, "No key yet"),
    h("p", {}, "Create or import a key first: ", h("a", { href: "#key" }, "Key")));
}

// The controls an action locks while it runs: a form's fields and buttons, or the button.
function controlsOf(target) {
  const all = target instanceof HTMLFormElement ? [...target.elements] : [target];
  return all.filter((control) => "disabled" in control && !control.disabled);
}

// Run an async action from a form, showing its outcome in `out`. While it runs its form (or
// button) is disabled and further submits are ignored: a double-click must not sign a second
// op, and the fields cannot change under an op being signed.
function action(out, run) {
  let running = false;
  return async (event) => {
    event.preventDefault();
    if (running) return;
    running = true;
    const locked = controlsOf(event.currentTarget);
    for (const control of locked) control.disabled = true;
    replace(out, message("info", "working…"));
    try {
      const result = await run();
      replace(out, result ?? "");
    } catch (error) {
      replace(out, message("error", `${error.code ? `${error.code}: ` : ""}${error.message}`));
    } finally {
      for (const control of locked) control.disabled = false;
      running = false;
    }
  };
}

// --- key -------------------------------------------------------------------------------------

export function keyPage(root) {
  const out = h("div", { class: "out", id: "key-out" });
  if (!wallet.key) {
    const backup = h("input", { type: "checkbox", id: "key-backup" });
    const paste = h("textarea", { id: "key-file-text", rows: 3,
      placeholder: '{"account_id": "sw1…", "seed": "…"}' });
    const file = h("input", { type: "file", id: "key-file", accept: ".key,.json,text/plain" });
    replace(root,
      h("h2", {}, "Your key"),
      h("p", {}, "Your key is made here, by your browser, and stays in this browser's storage " +
        "for this site. It never leaves the browser: only signatures are sent to the node."),
      h("form", { id: "create-key", onsubmit: action(out, async () => {
        await installKey(await generateKey(backup.checked));
      }) },
        h("label", { class: "check" }, backup, " Keep a backup copy I can export"),
        h("small", {}, "Without it the key is non-extractable: not even this page can read it " +
          "out, so losing this browser's data loses the account. With it, the key can be saved " +
          "as a key file (the same format as “swarmd wallet new”)."),
        h("button", { type: "submit" }, "Create a key")),
      h("h3", {}, "Or import a CLI key file"),
      h("form", { id: "import-key", onsubmit: action(out, async () => {
        const text = file.files[0] ? await file.files[0].text() : paste.value;
        await installKey(await importKeyFile(text));
      }) },
        field("Key file", file), field("…or paste its contents", paste),
        h("button", { type: "submit" }, "Import")),
      out);
    return undefined;
  }
  const exportButton = h("button", { id: "export-key", disabled: !wallet.key.exportable,
    onclick: action(out, async () => {
      const text = await exportKeyFile(wallet.key);
      const link = h("a", { href: URL.createObjectURL(new Blob([text])),
        download: "swarmd-wallet.key", id: "key-download" }, "Download swarmd-wallet.key");
      return [message("info", "Keep this file private: whoever holds it owns the account. "),
        link];
    }) }, "Export key file");
  replace(root,
    h("h2", {}, "Your key"),
    h("p", {}, "Account id: ", h("code", { id: "account-id" }, wallet.accountId)),
    h("p", {}, wallet.key.exportable
      ? "This key has an exportable backup copy."
      : "This key is non-extractable: it cannot be exported, only used to sign here."),
    exportButton,
    h("button", { id: "forget-key", class: "danger", onclick: action(out, async () => {
      if (!confirm("Forget this key? Without a backup the account is lost.")) return null;
      await forgetKey();
      await useKey(null);
      return message("info", "Key forgotten.");
    }) }, "Forget key"),
    h("div", { id: "signup" }),
    out);
  signupSection(root.querySelector("#signup"));
  return undefined;
}

async function installKey(record) {
  await saveKey(record);
  await useKey(record);
}

async function signupSection(root) {
  let info;
  try {
    info = await api.onboarding();
  } catch {
    info = { enabled: false };
  }
  if (!info.enabled) {
    replace(root, h("h3", {}, "Sign up"), h("p", {}, "This node does not run onboarding; ask " +
      "a council operator for the signup reward (“swarmd wallet grant”)."));
    return;
  }
  const out = h("div", { class: "out", id: "signup-out" });
  // An invite code from the node's operator replaces the puzzle (or is required by the node).
  const invite = h("input", { id: "signup-invite", autocomplete: "off", maxlength: 64,
    required: info.require_invite, placeholder: info.require_invite ? "" : "(optional)" });
  replace(root, h("h3", {}, "Sign up"),
    h("p", {}, `Get the signup reward of ${info.signup_reward} credits from this council ` +
      "node. " + (info.require_invite
        ? "This node signs up by invite code only: ask its operator for one."
        : `Your browser first solves a small puzzle (${info.pow_bits} bits of work) so that ` +
          "nobody can drain the reward by script, unless you have an invite code.")),
    h("form", { id: "signup-form", onsubmit: action(out, async () => {
      const code = invite.value.trim();
      const body = code ? { account: wallet.accountId, invite: code }
        : { account: wallet.accountId, nonce: await solvePuzzle(info.pow_bits, (n) =>
          replace(out, message("info", `solving the puzzle… ${n} tries`))) };
      const result = await api.signup(body);
      return message("ok", `Signup reward granted (op ${result.op_id.slice(0, 12)}); it is ` +
        "pending until the next checkpoint makes it final.");
    }) }, field("Invite code", invite),
      h("button", { id: "signup-button", type: "submit" }, "Sign up")),
    out);
}

// --- balance ---------------------------------------------------------------------------------

export function balancePage(root) {
  if (!wallet.key) return needsKey(root);
  const body = h("div", { id: "balance" }, "loading…");
  replace(root, h("h2", {}, "Balance"), body,
    h("details", { open: true }, h("summary", {}, "What do these numbers mean?"),
      h("p", {}, "Balance counts every credit sent to you and every debit you made, including " +
        "ones not yet final. Final is what the council's latest checkpoint settled; pending is " +
        "the difference, and it can still change if a conflicting op wins."),
      h("p", {}, "Spendable is the part of your balance your own chain has already received. " +
        "A credit sent to you first arrives as unreceived; it becomes spendable when one of " +
        "your own ops lists it (this wallet does that for you on every send, burn or claim, " +
        "up to 64 credits at a time). Sends and burns can use at most spendable plus what " +
        "that same op receives.")));
  const refresh = async () => {
    const view = await api.account(wallet.accountId);
    const pending = view.balance - view.final_balance;
    replace(body, h("table", {},
      row("Balance", view.balance, "balance-total"),
      row("Final", view.final_balance, "balance-final"),
      row("Pending (not final yet)", pending > 0 ? `+${pending}` : String(pending),
        "balance-pending"),
      row("Spendable", view.spendable, "balance-spendable"),
      row("Unreceived credits", view.unreceived_count, "balance-unreceived")));
  };
  refresh();
  return onChange((what) => (what === "notification" || what === "submitted") && refresh());
}

function row(label, value, id) {
  return h("tr", {}, h("th", {}, label), h("td", { id }, String(value)));
}

// --- history ---------------------------------------------------------------------------------

export function historyPage(root) {
  if (!wallet.key) return needsKey(root);
  const list = h("tbody", { id: "history" });
  const more = h("button", { id: "history-more" }, "Older");
  const out = h("div", { class: "out" });
  let cursor = null;
  const load = async () => {
    const page = await api.history(wallet.accountId, cursor);
    for (const op of page.ops) list.append(historyRow(op));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!list.children.length) list.append(h("tr", {}, h("td", { colspan: 4 }, "No ops yet.")));
  };
  more.addEventListener("click", action(out, load));
  replace(root, h("h2", {}, "History"),
    h("p", {}, "Your own ops, newest first. Credits sent to you show on the balance page " +
      "until one of your ops receives them."),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Op"),
      h("th", {}, "Details"), h("th", {}, "Status"))), list), more, out);
  load().catch((error) => replace(out, message("error", error.message)));
  return undefined;
}

function historyRow(entry) {
  const op = entry.op;
  const details = {
    transfer: () => `${op.amount} to ${shortId(op.to)}`,
    grant: () => `${op.amount} to ${shortId(op.to)}`,
    burn: () => `${op.amount} toward “${op.target}”`,
    "handle.claim": () => `@${op.handle}`,
    "handle.revoke": () => `@${op.handle}`,
    "handle.endorse": () => `claim ${op.claim.slice(0, 12)}`,
  }[op.kind];
  return h("tr", {}, h("td", {}, String(op.seq)), h("td", {}, op.kind),
    h("td", {}, details ? details() : op.reason ?? ""),
    h("td", { class: `status-${entry.status}` }, STATUS_TEXT[entry.status] ?? entry.status,
      entry.code ? ` (${entry.code})` : ""));
}

const STATUS_TEXT = {
  applied: "applied, not final yet",
  final: "final",
  pending: "waiting for its parents",
  excluded: "excluded",
  rejected: "rejected",
  reverted: "reverted by a rollback",
}

// --- send ------------------------------------------------------------------------------------

export function sendPage(root) {
  if (!wallet.key) return needsKey(root);
  const to = h("input", { id: "send-to", required: true, placeholder: "@handle or sw1…" });
  const amount = h("input", { id: "send-amount", type: "number", min: 1, required: true });
  const out = h("div", { class: "out", id: "send-out" });
  replace(root, h("h2", {}, "Send credits"),
    h("form", { id: "send-form", onsubmit: action(out, async () => {
      const recipient = await resolveRecipient(to.value);
      const { opId } = await submit("transfer", {
        to: recipient.key, amount: parseAmount(amount.value),
      });
      return message("ok", `Sent ${amount.value} credits to ${recipient.accountId} ` +
        `(op ${opId.slice(0, 12)}); you will be notified when it is final.` +
        (recipient.final ? "" : ` (${to.value.trim()}'s binding is not final yet.)`));
    }) },
      field("To", to, "an account id (sw1…) or a bound handle (@name)"),
      field("Amount", amount), h("button", { type: "submit" }, "Send")),
    out);
  return undefined;
}

// --- hype ------------------------------------------------------------------------------------

export function hypePage(root) {
  const board = h("tbody", { id: "leaderboard" });
  const target = h("input", { id: "burn-target", required: true, maxlength: 128 });
  const amount = h("input", { id: "burn-amount", type: "number", min: 1, required: true });
  const out = h("div", { class: "out", id: "burn-out" });
  const refresh = async () => {
    const view = await api.hype(10);
    replace(board, view.targets.length ? view.targets.map((item, i) => h("tr", {},
      h("td", {}, String(i + 1)), h("td", { class: "target" }, item.target),
      h("td", {}, String(item.total)), h("td", {}, String(item.final_total))))
      : h("tr", {}, h("td", { colspan: 4 }, "Nothing burned yet.")));
  };
  replace(root, h("h2", {}, "Hype"),
    h("p", {}, "Burning destroys credits to push a target up the leaderboard."),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Target"),
      h("th", {}, "Total"), h("th", {}, "Final"))), board),
    wallet.key ? h("form", { id: "burn-form", onsubmit: action(out, async () => {
      const { opId } = await submit("burn", {
        amount: parseAmount(amount.value), target: parseTarget(target.value),
      });
      return message("ok", `Burned ${amount.value} toward “${target.value}” (op ` +
        `${opId.slice(0, 12)}).`);
    }) }, field("Target", target), field("Amount", amount),
      h("button", { type: "submit" }, "Burn")) : h("p", {}, "Create a key to burn."),
    out);
  refresh();
  return onChange((what, event) => what === "event" && event.type === "hype_burned" && refresh());
}

// --- handle ----------------------------------------------------------------------------------

export function handlePage(root) {
  if (!wallet.key) return needsKey(root);
  // (A pattern attribute is compiled with the regex `v` flag: "-" in a class is escaped.)
  const name = h("input", { id: "handle-name", required: true,
    pattern: `[a-z0-9_\\-]{${HANDLE_LENGTH_MIN},${HANDLE_LENGTH_MAX}}`,
    minlength: HANDLE_LENGTH_MIN, maxlength: HANDLE_LENGTH_MAX });
  const out = h("div", { class: "out", id: "handle-out" });
  const watch = h("div", { id: "handle-watch" });
  const show = async () => {
    const claims = Object.entries(wallet.mine.claims);
    const rows = [];
    for (const [handle, claimId] of claims) rows.push(await claimState(handle, claimId));
    replace(watch, rows.length ? h("ul", {}, rows) : "");
  };
  replace(root, h("h2", {}, "Your handle"),
    h("p", {}, "A handle lets others send to @name. A claim binds once a quorum of the " +
      "council endorses it; if two accounts claim one name, the council's arbitration picks one " +
      "and the other claim loses."),
    h("form", { id: "claim-form", onsubmit: action(out, async () => {
      const { opId } = await submit("handle.claim", { handle: name.value });
      show();
      return message("ok", `Claimed @${name.value} (op ${opId.slice(0, 12)}).`);
    }) }, field("Handle", name, `${HANDLE_LENGTH_MIN}–${HANDLE_LENGTH_MAX} of a-z 0-9 _ -`),
      h("button", { type: "submit" }, "Claim")),
    out, h("h3", {}, "Your claims"), watch);
  show();
  return onChange((what, event) => what === "event" && event.type?.startsWith("handle") && show());
}

async function claimState(handle, claimId) {
  let text;
  let kind = "pending";
  try {
    const view = await api.handle(handle);
    const mine = view.claims.find((claim) => claim.claim_id === claimId);
    if (view.claim_id === claimId) {
      kind = view.final ? "ok" : "pending";
      text = view.final ? "bound to you (final)" : "bound to you (final at the next checkpoint)";
    } else if (view.owner) {
      kind = "error";
      text = `lost: bound to ${view.owner}, whose claim reached a quorum of council ` +
        "endorsements first";
    } else if (mine) {
      text = `waiting for endorsements: ${mine.endorsements} of ${view.quorum}`;
      if (view.claims.length > 1) text += ` (contested by ${view.claims.length - 1} other claim)`;
    } else {
      text = "no longer open";
    }
  } catch (error) {
    text = error.code === "handle_not_found" ? "not known to this node yet" : error.message;
  }
  return h("li", { class: `claim ${kind}`, dataset: { handle } }, `@${handle}: ${text}`);
}

// --- notifications ---------------------------------------------------------------------------

export function notificationsPage(root) {
  const list = h("ul", { id: "notifications" });
  const show = () => replace(list, wallet.notifications.length
    ? wallet.notifications.map((item) => h("li", { class: `note ${item.kind}` },
      h("time", {}, item.at), " ", item.text))
    : h("li", {}, "Nothing yet. Events about your account appear here as they happen."));
  replace(root, h("h2", {}, "Notifications"),
    h("p", {}, "Live from this node's event stream (", h("span", { id: "stream-state" },
      wallet.streamState), "). Credits and the outcome of your own ops that you missed while " +
      "the page was closed are caught up when it opens."), list);
  show();
  return onChange((what) => {
    if (what === "notification") show();
    if (what === "stream") replace(root.querySelector("#stream-state"), wallet.streamState);
  });
}

// --- checkpoint ------------------------------------------------------------------------------

export function checkpointPage(root) {
  const body = h("div", { id: "checkpoint" }, "verifying…");
  replace(root, h("h2", {}, "Latest checkpoint"),
    h("p", {}, "Your browser checks the council's signatures itself, against the genesis keys; " +
      "it does not take the node's word for it."), body);
  verifyLatest(body).catch((error) => replace(body, message("error", error.message)));
  return undefined;
}

async function verifyLatest(body) {
  const genesis = await api.genesis();
  const council = [];
  for (const member of genesis.council) council.push(await parseAccountId(member));
  const networkId = await networkIdOf({ ...genesis, council });
  const matches = toHex(networkId) === wallet.status.network_id;
  const latest = await api.checkpoint("latest");
  const report = await verifyBundle(fromHex(latest.bundle), networkId, council);
  const signers = (report.signers ?? []).map((s) => toHex(s.key));
  const cut = report.ok ? await decodeCut(report.value) : null;
  const ok = report.ok && matches && cut.height === report.height;
  const reason = report.reason ?? (matches ? "the cut's height differs" : "network id differs");
  const verdict = ok
    ? `Checkpoint ${report.height} is signed by ${report.signers.length} of ` +
      `${council.length} council members (a quorum is ${report.quorum}).`
    : `Checkpoint ${latest.height} does NOT verify: ${reason}`;
  const rows = genesis.council.map((member, i) => h("tr", {}, h("td", {}, shortId(member)),
    h("td", {}, signers.includes(toHex(council[i])) ? "✓ valid signature" : "—")));
  replace(body,
    h("p", {}, "Network id (computed from the genesis): ", h("code", {}, toHex(networkId)),
      matches ? " — matches this node. " : " — DOES NOT match this node's. ",
      "Compare it with the network id your council published: the signatures prove the " +
      "checkpoint only for the council of that genesis."),
    h("p", { id: "checkpoint-verdict", class: ok ? "message ok" : "message error" }, verdict),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Council member"), h("th", {}, "Signed"))),
      h("tbody", {}, rows)),
    cut && h("p", {}, "Signed state root: ", h("code", { id: "checkpoint-root" },
      toHex(cut.stateRoot))),
    cut && h("p", {}, "Checkpoint id: ", h("code", {}, toHex(cut.checkpointId))));
}
