// Entry point: the header, the navigation and the page router (location.hash).

import * as canonical from "./canonical.js";
import * as bytes from "./bytes.js";
import { h, replace, shortId } from "./dom.js";
import * as keys from "./keys.js";
import * as ops from "./ops.js";
import {
  balancePage, checkpointPage, handlePage, historyPage, hypePage, keyPage, notificationsPage,
  sendPage,
} from "./pages.js";
import { onChange, start, wallet } from "./wallet.js";

const PAGES = {
  key: ["Key", keyPage],
  balance: ["Balance", balancePage],
  history: ["History", historyPage],
  send: ["Send", sendPage],
  hype: ["Hype", hypePage],
  handle: ["Handle", handlePage],
  notifications: ["Notifications", notificationsPage],
  checkpoint: ["Checkpoint", checkpointPage],
};

// For the browser tests: the encoder and signer they check against tests/vectors.
window.swarmd = { canonical, bytes, keys, ops, wallet };

let cleanup = null;

function route() {
  const name = location.hash.slice(1) || (wallet.key ? "balance" : "key");
  const [, page] = PAGES[name] ?? PAGES.key;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#${name}`);
  }
  cleanup?.();
  const main = document.querySelector("main");
  main.dataset.page = name;
  cleanup = page(main) ?? null;
}

function header() {
  const who = document.querySelector("#who");
  const toast = document.querySelector("#toast");
  const show = () => replace(who,
    wallet.accountId ? h("code", { title: wallet.accountId }, shortId(wallet.accountId)) : "no key",
    " · ", h("span", { id: "stream" }, wallet.streamState));
  show();
  onChange((what, detail) => {
    if (what === "key") route();
    if (what === "key" || what === "stream") show();
    if (what === "notification") {
      replace(toast, h("p", { class: `note ${detail.kind}` }, detail.text));
      toast.hidden = false;
      toast.title = "click to dismiss";
    }
  });
}

async function boot() {
  // The second click of a double-click never submits a form again: the first click's action
  // may already have finished (a fast node answers within the double-click's interval), and
  // a double-click on "Send" means one send. Keyboard submits have detail 0.
  document.addEventListener("click", (event) => {
    const submit = event.target instanceof Element
      && event.target.closest("form button:not([type]), button[type=submit]");
    if (event.detail > 1 && submit) event.preventDefault();
  }, true);
  const toast = document.querySelector("#toast");
  toast.addEventListener("click", () => { toast.hidden = true; });
  const nav = document.querySelector("nav");
  replace(nav, Object.entries(PAGES).map(([id, [label]]) => h("a", { href: `#${id}` }, label)));
  try {
    await start();
  } catch (error) {
    replace(document.querySelector("main"), h("p", { class: "message error" },
      `This node's API does not answer: ${error.message}`));
    return;
  }
  document.querySelector("#network").textContent =
    `node ${shortId(wallet.status.node_id ?? "")} · network ` +
    wallet.status.network_id.slice(0, 12);
  header();
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true";
}

boot();
