import assert from "node:assert/strict";
import { AccessList, DEFAULT_TRUSTED_PROXIES } from "./list.ts";
import { AccessPolicy, type AccessVerdict, protectedModeApplies } from "./policy.ts";

const NOTHING_GIVEN = { allow: false, clientCertificates: false };

Deno.test("protectedModeApplies: beyond loopback with no rule of who may connect", () => {
  for (const host of ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "example.com"]) {
    assert.equal(protectedModeApplies(host, NOTHING_GIVEN), true, host);
  }
  for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"]) {
    assert.equal(protectedModeApplies(host, NOTHING_GIVEN), false, host);
  }
  assert.equal(protectedModeApplies("0.0.0.0", { allow: true, clientCertificates: false }), false);
  assert.equal(protectedModeApplies("0.0.0.0", { allow: false, clientCertificates: true }), false);
});

Deno.test("protected mode serves loopback clients only and says how to open up", () => {
  const policy = new AccessPolicy({ protectedMode: true });
  assert.equal(policy.expectsProxyHeader, false);
  for (const client of ["127.0.0.1", "127.0.0.3", "::1", "::ffff:127.0.0.1"]) {
    assert.equal(policy.peerVerdict(client), "ok", client);
    assert.equal(policy.clientVerdict(client), "ok", client);
  }
  for (const client of ["192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"]) {
    assert.equal(policy.peerVerdict(client), "protected_mode", client);
  }
  assert.match(AccessPolicy.replyText("protected_mode"), /--allow/);
});

Deno.test("an allow list decides alone, loopback included", () => {
  const policy = new AccessPolicy({
    allow: AccessList.parse("--allow", "192.0.2.0/24"),
    protectedMode: true,
  });
  assert.equal(policy.clientVerdict("192.0.2.7"), "ok");
  assert.equal(policy.clientVerdict("198.51.100.7"), "not_allowed");
  assert.equal(policy.clientVerdict("127.0.0.1"), "not_allowed");
  const open = new AccessPolicy({ allow: AccessList.parse("--allow", "any"), protectedMode: true });
  assert.equal(open.clientVerdict("198.51.100.7"), "ok");
  const off = new AccessPolicy({ protectedMode: false });
  assert.equal(off.clientVerdict("198.51.100.7"), "ok", "loopback listener: no rule at all");
});

Deno.test("with PROXY headers, only trusted proxies pass the peer check; the header's client is checked next", () => {
  const policy = new AccessPolicy({
    allow: AccessList.parse("--allow", "203.0.113.0/24"),
    protectedMode: false,
    trustedProxies: AccessList.parse("--trusted-proxy", DEFAULT_TRUSTED_PROXIES),
  });
  assert.equal(policy.expectsProxyHeader, true);
  assert.equal(policy.peerVerdict("127.0.0.1"), "ok");
  assert.equal(policy.peerVerdict("::1"), "ok");
  assert.equal(policy.peerVerdict("203.0.113.9"), "untrusted_proxy", "even an allowed client");
  assert.equal(policy.clientVerdict("203.0.113.9"), "ok");
  assert.equal(policy.clientVerdict("198.51.100.7"), "not_allowed");
});

Deno.test("reply texts: one sentence each, naming the flag, with no address in them", () => {
  const verdicts: Exclude<AccessVerdict, "ok">[] = [
    "not_allowed",
    "protected_mode",
    "untrusted_proxy",
  ];
  const flags = ["--allow", "--allow", "--trusted-proxy"];
  verdicts.forEach((verdict, i) => {
    const text = AccessPolicy.replyText(verdict);
    assert.match(text, /^[A-Z][^.]*\.$/, text);
    assert.ok(text.includes(flags[i]), text);
  });
});
