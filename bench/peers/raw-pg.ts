// S1b baseline: what a team would hand-write without GraphQL: node:http + postgres.js. It checks the
// bearer as any server must (verifies the access token's signature, then that its session is open),
// selects the page, its shares and the total, and returns the JSON Vigil returns for the S1b document.
// Env: DATABASE_URL, JWT_PRIVATE_KEY (the gateway's, PKCS8 PEM). Prints `READY <url>`.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { createServer } from 'node:http';
import { jwtVerify } from 'jose';
import postgres from 'postgres';
import { listenAndAnnounce } from './lib/http-server';

// Named prepared statements, postgres.js's default (RAW_PREPARE=false to compare with Drizzle's unnamed ones).
const sql = postgres(process.env.DATABASE_URL!, { max: 10, onnotice: () => {}, prepare: process.env.RAW_PREPARE !== 'false' });
const publicKey = createPublicKey(createPrivateKey(process.env.JWT_PRIVATE_KEY!));
const ALL_PERMISSIONS = ['LIVE_VIEW', 'PLAYBACK', 'ALARMS', 'CONFIGURE'];

async function authenticate(authorization: string | undefined): Promise<string | null> {
  if (!authorization?.startsWith('Bearer ')) return null;
  try {
    const { payload } = await jwtVerify(authorization.slice(7), publicKey, { algorithms: ['EdDSA'], issuer: 'vigil', audience: 'vigil-api' });
    const [s] = await sql`select user_id from sessions where id = ${payload.sid as string} and revoked_at is null and expires_at > now()`;
    return s && s.user_id === payload.sub ? (s.user_id as string) : null;
  } catch {
    return null;
  }
}

const status = (d: { online: boolean; heartbeats: boolean; last_seen_at: Date | null }) =>
  d.online ? 'ONLINE' : d.heartbeats ? 'OFFLINE' : d.last_seen_at ? 'UNKNOWN' : 'OFFLINE';

async function devicesPage(userId: string, first: number) {
  const visible = sql`b.ended_at is null and (b.owner_id = ${userId} or my.id is not null)`;
  const myShare = sql`left join shares my on my.binding_id = b.id and my.grantee_id = ${userId} and my.revoked_at is null and (my.expires_at is null or my.expires_at > now())`;
  const [rows, [total]] = await Promise.all([
    sql`select d.id, d.serial, d.model, d.firmware, d.channels, d.online, d.heartbeats, d.last_seen_at,
               b.id as binding_id, b.name, b.bound_at, b.owner_id, my.permissions as my_permissions
        from bindings b join devices d on d.id = b.device_id ${myShare}
        where ${visible} order by b.bound_at, b.id limit ${first + 1}`,
    sql`select count(*)::int as n from bindings b ${myShare} where ${visible}`,
  ]);
  const page = rows.slice(0, first);
  const owned = page.filter((r) => r.owner_id === userId).map((r) => r.binding_id as string);
  const shared = page.filter((r) => r.owner_id !== userId).map((r) => r.binding_id as string);
  const shares = await sql`
    select s.id, s.binding_id, s.grantee_id, s.invite_login, s.permissions, s.expires_at, u.display_name
    from shares s join users u on u.id = s.grantee_id
    where s.revoked_at is null and (s.binding_id = any(${owned}::uuid[])
      or (s.binding_id = any(${shared}::uuid[]) and s.grantee_id = ${userId} and (s.expires_at is null or s.expires_at > now())))
    order by s.created_at, s.id`;
  const edges = page.map((r) => {
    const cursor = Buffer.from(`${(r.bound_at as Date).getTime()}.${r.binding_id}`).toString('base64url');
    const owner = r.owner_id === userId;
    return {
      cursor,
      node: {
        id: r.id,
        name: r.name,
        serial: r.serial,
        model: r.model,
        firmware: r.firmware,
        status: status(r as never),
        lastSeenAt: r.last_seen_at ? (r.last_seen_at as Date).toISOString() : null,
        role: owner ? 'OWNER' : 'SHARED',
        permissions: owner ? ALL_PERMISSIONS : ALL_PERMISSIONS.filter((p) => (r.my_permissions as string[]).includes(p)),
        channels: r.channels,
        shares: shares
          .filter((s) => s.binding_id === r.binding_id)
          .map((s) => ({
            id: s.id,
            permissions: ALL_PERMISSIONS.filter((p) => (s.permissions as string[]).includes(p)),
            expiresAt: s.expires_at ? (s.expires_at as Date).toISOString() : null,
            grantee: { id: s.grantee_id, displayName: s.display_name, email: (s.invite_login as string).includes('@') ? s.invite_login : null },
          })),
      },
    };
  });
  return {
    devices: {
      totalCount: total!.n as number,
      pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
      edges,
    },
  };
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    (async () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { variables?: { first?: number } };
      const userId = await authenticate(req.headers.authorization);
      if (!userId) return { status: 401, json: JSON.stringify({ errors: [{ message: 'Authentication required' }] }) };
      const first = body.variables?.first ?? 50;
      return { status: 200, json: JSON.stringify({ data: await devicesPage(userId, first) }) };
    })().then(
      ({ status: code, json }) => res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
});
listenAndAnnounce(server);
