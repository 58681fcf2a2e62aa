import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ChangePasswordDocument, LoginDocument, RegisterDocument } from './generated/graphql';
import { expectCode, expectData, OTHER_STRONG_PASSWORD, startApp, STRONG_PASSWORD, uniqueEmail, type GqlResult, type TestApp } from './helpers/harness';
import { LOGIN_DELAY } from '../src/accounts/auth.service';
import { sourceKey } from '../src/lib/client-address';

// Every request names its source in X-Forwarded-For (TRUST_PROXY=true), as behind the load balancer.
let seq = 0;
/** A fresh documentation-range address (RFC 5737) per call. */
const freshIp = () => `203.0.113.${(seq++ % 250) + 1}`;
const from = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });

async function register(t: TestApp, email: string, ip: string) {
  return expectData(await t.gql(RegisterDocument, { input: { email, password: STRONG_PASSWORD } }, from(ip))).register;
}
const login = (t: TestApp, loginName: string, password: string, ip: string) => t.gql(LoginDocument, { input: { login: loginName, password } }, from(ip));

const retryAfter = (r: GqlResult<unknown>) => expectCode(r, 'RATE_LIMITED').extensions?.retryAfterSeconds ?? 0;

describe('login limits at their defaults', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ env: { TRUST_PROXY: 'true' } });
  });
  after(() => t.stop());

  test('lets the owner sign in, from home or anywhere, after an attacker failed 10 times on the account', async () => {
    const email = uniqueEmail();
    const home = freshIp();
    await register(t, email, home);
    // Before: 10 failures locked the account for everyone, its owner included, for 15 minutes.
    for (const attacker of [freshIp(), freshIp()]) {
      for (let i = 0; i < 5; i++) expectCode(await login(t, email, OTHER_STRONG_PASSWORD, attacker), 'INVALID_CREDENTIALS');
    }
    expectData(await login(t, email, STRONG_PASSWORD, home));
    expectData(await login(t, email, STRONG_PASSWORD, freshIp()));
  });
});

describe('login limits', () => {
  let t: TestApp;
  before(async () => {
    // Per-source budget and account ceiling small enough to reach; register budget out of the way.
    t = await startApp({ env: { TRUST_PROXY: 'true', LOGIN_MAX_PER_ACCOUNT: '8', LOGIN_MAX_PER_IP: '12', REGISTER_MAX_PER_IP: '1000' } });
  });
  after(() => t.stop());

  test('slows one (account, source) progressively after the free failures instead of locking it', async () => {
    const email = uniqueEmail();
    await register(t, email, freshIp());
    const ip = freshIp();
    for (let i = 0; i < 5; i++) expectCode(await login(t, email, OTHER_STRONG_PASSWORD, ip), 'INVALID_CREDENTIALS');
    // The sixth attempt is made, and starts the first wait.
    expectCode(await login(t, email, OTHER_STRONG_PASSWORD, ip), 'INVALID_CREDENTIALS');
    const wait = retryAfter(await login(t, email, STRONG_PASSWORD, ip));
    assert.ok(wait >= 1 && wait <= LOGIN_DELAY.minWaitS, `first wait ${wait}s`);
  });

  test('cannot slip parallel guesses past the delay of one (account, source)', async () => {
    const email = uniqueEmail();
    await register(t, email, freshIp());
    const ip = freshIp();
    const results = await Promise.all(Array.from({ length: 12 }, () => login(t, email, OTHER_STRONG_PASSWORD, ip)));
    const codes = results.map((r) => r.errors?.[0]?.extensions?.code);
    // 5 free attempts and the first delayed one are made; the rest wait.
    assert.equal(codes.filter((c) => c === 'INVALID_CREDENTIALS').length, 6, JSON.stringify(codes));
    assert.equal(codes.filter((c) => c === 'RATE_LIMITED').length, 6);
  });

  test('refuses unknown sources past the account ceiling, even with the right password, but not the addresses the owner used', async () => {
    const email = uniqueEmail();
    const home = freshIp();
    await register(t, email, home);
    // A distributed attack: 8 failures from 4 addresses reach the ceiling of 8.
    for (let i = 0; i < 8; i++) expectCode(await login(t, email, OTHER_STRONG_PASSWORD, `198.51.100.${(i % 4) + 1}`), 'INVALID_CREDENTIALS');
    const refused = expectCode(await login(t, email, STRONG_PASSWORD, freshIp()), 'RATE_LIMITED');
    assert.match(refused.message, /used before|reset your password/);
    // An unknown login answers the same past its own ceiling (no existence oracle).
    const ghost = uniqueEmail('ghost');
    for (let i = 0; i < 8; i++) expectCode(await login(t, ghost, OTHER_STRONG_PASSWORD, `198.51.100.${(i % 4) + 1}`), 'INVALID_CREDENTIALS');
    assert.equal(expectCode(await login(t, ghost, STRONG_PASSWORD, freshIp()), 'RATE_LIMITED').message, refused.message);
    // The owner's own address (a session was opened from it) still signs in; the success ends the count.
    expectData(await login(t, email, STRONG_PASSWORD, home));
    expectData(await login(t, email, STRONG_PASSWORD, freshIp()));
  });

  test('limits one source failing across many accounts and leaves other sources alone', async () => {
    const email = uniqueEmail();
    await register(t, email, freshIp());
    const sprayer = freshIp();
    let limited: GqlResult<unknown> | undefined;
    for (let i = 0; i < 13 && !limited; i++) {
      const res = await login(t, uniqueEmail('spray'), STRONG_PASSWORD, sprayer);
      if (res.errors?.[0]?.extensions?.code === 'RATE_LIMITED') limited = res;
      else expectCode(res, 'INVALID_CREDENTIALS');
    }
    assert.ok(limited, 'no RATE_LIMITED after 13 failures from one source');
    assert.ok(retryAfter(limited) > 0);
    expectData(await login(t, email, STRONG_PASSWORD, freshIp()));
  });

  test('counts an IPv6 source by its /64, so stepping through one prefix does not reset the budget', async () => {
    const email = uniqueEmail();
    await register(t, email, freshIp());
    for (let i = 0; i < 6; i++) expectCode(await login(t, email, OTHER_STRONG_PASSWORD, `2001:db8:1:2::${(i + 1).toString(16)}`), 'INVALID_CREDENTIALS');
    expectCode(await login(t, email, OTHER_STRONG_PASSWORD, '2001:db8:1:2:ffff::9'), 'RATE_LIMITED');
    expectData(await login(t, email, STRONG_PASSWORD, '2001:db8:1:3::1'));
  });

  test('slows the password step-up of a stolen session without touching the owner elsewhere', async () => {
    const email = uniqueEmail();
    const home = freshIp();
    const owner = await register(t, email, home);
    const thief = freshIp();
    for (let i = 0; i < 6; i++) {
      expectCode(await t.gql(ChangePasswordDocument, { currentPassword: OTHER_STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token: owner.accessToken, ...from(thief) }), 'INVALID_CREDENTIALS');
    }
    expectCode(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token: owner.accessToken, ...from(thief) }), 'RATE_LIMITED');
    expectData(await t.gql(ChangePasswordDocument, { currentPassword: STRONG_PASSWORD, newPassword: OTHER_STRONG_PASSWORD }, { token: owner.accessToken, ...from(home) }));
  });
});

test('sourceKey keeps IPv4, unwraps IPv4-mapped IPv6 and cuts IPv6 to its /64', () => {
  assert.equal(sourceKey('192.0.2.1'), '192.0.2.1');
  assert.equal(sourceKey('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(sourceKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
});
