// S4: a reconnect storm. N (5,000) graphql-ws subscribers of `alarms(deviceIds: [their device], after:)`
// all drop at once (a network blip: sockets terminated, no close handshake) and reconnect spread
// over 1 s, each resuming with the last cursor it received, while alarms keep flowing at 10/s
// (round-robin over the devices). Right after the drop one alarm goes to every device, so each
// subscriber has something to replay: "re-established" = its first message after resubscribing,
// and the figure is the time from the first reconnect until the LAST subscriber got it. Every subscriber's
// alarms are checked: none lost, none duplicated (counts in the note).
// Vigil is a real gateway (NODE_ENV=production, Postgres + Redis); P4 a bare graphql-ws server with
// the same resume over an in-memory log.
import { alternate, median, ratio, sleep, startChild, wallMs, type ChildServer, type ResultRow, type Scenario } from '../lib/harness';
import { postAlarm } from '../lib/live';
import { startWsLoad, type ConnSpec, type Post, type WsLoad } from '../lib/ws-load';
import { ALARM_FIELDS, collect, startVigil, type VigilFixture } from './s2';

const DEVICES = 10;
const RESUME_QUERY = `subscription($d: [ID!], $after: String) { alarms(deviceIds: $d, after: $after) { ${ALARM_FIELDS} } }`;
/** P4's sockets and alarms are tagged apart from Vigil's (keys never collide). */
const P4_TAGS = 1000;

const scenario: Scenario = {
  id: 'S4',
  title: 'subscribers drop and reconnect within 1 s, resume with cursors, alarms at 10/s',
  async run(ctx) {
    // The issue's size: 5,000 subscribers (1,000 with --quick; BENCH_SUBSCRIBERS overrides).
    const subscribers = Number(process.env.BENCH_SUBSCRIBERS ?? (ctx.quick ? 1000 : 5000));
    const spreadMs = 1000;
    let vigil: VigilFixture | undefined;
    let p4: ChildServer | undefined;
    let load: WsLoad | undefined;
    try {
      ctx.progress(`set-up: gateway, ${DEVICES} accounts and devices, P4, load client`);
      [vigil, p4, load] = await Promise.all([startVigil(ctx, DEVICES), startChild('bench/peers/p4-graphql-ws.ts'), startWsLoad(4)]);
      const v = vigil;
      const p4url = p4.url;
      let p4Channel = 1_000_000_000;
      const contenders = {
        Vigil: {
          urlPrefix: v.wsUrl,
          conn: (i: number): ConnSpec => ({ url: v.wsUrl, mode: 'graphql-ws', token: v.users[i % DEVICES]!.token, subs: [{ tag: i % DEVICES, query: RESUME_QUERY, variables: { d: [v.devices[i % DEVICES]!.deviceId] }, resumeVar: 'after' }] }),
          async post(device: number): Promise<Post> {
            let p!: Post;
            await postAlarm(v.url, v.devices[device]!.ingestPath, (channel) => (p = { key: channel, tag: device, at: wallMs() }));
            return p;
          },
        },
        'P4 graphql-ws': {
          urlPrefix: `${p4url.replace(/^http/, 'ws')}/graphql`,
          conn: (i: number): ConnSpec => ({
            url: `${p4url.replace(/^http/, 'ws')}/graphql`,
            mode: 'graphql-ws',
            token: `user-${i % DEVICES}`,
            subs: [{ tag: P4_TAGS + (i % DEVICES), query: RESUME_QUERY, variables: { d: [`device-${P4_TAGS + (i % DEVICES)}`] }, resumeVar: 'after' }],
          }),
          async post(device: number): Promise<Post> {
            const channel = p4Channel++;
            const p = { key: channel, tag: P4_TAGS + device, at: wallMs() };
            const res = await fetch(`${p4url}/publish`, { method: 'POST', body: JSON.stringify({ deviceId: `device-${P4_TAGS + device}`, channel }) });
            await res.text();
            return p;
          },
        },
      };
      type Name = keyof typeof contenders;
      for (const name of Object.keys(contenders) as Name[]) {
        const o = await load.open(Array.from({ length: subscribers }, (_, i) => contenders[name].conn(i)), { concurrency: 20 });
        ctx.progress(`${name}: ${o.opened} subscribers in ${(o.ms / 1000).toFixed(1)} s${o.failed ? `, ${o.failed} FAILED` : ''}`);
        if (o.failed) throw new Error(`${name}: ${o.failed} subscribers did not connect`);
      }
      // Warm-up: one alarm per device, so every subscriber holds a cursor before the first drop.
      for (const name of Object.keys(contenders) as Name[]) {
        const warm: Post[] = [];
        for (let d = 0; d < DEVICES; d++) warm.push(await contenders[name].post(d));
        const w = await collect(load, warm, 15_000);
        if (w.missing) throw new Error(`${name}: ${w.missing} warm-up deliveries missing`);
      }

      let lost = 0;
      let duplicated = 0;
      let notReestablished = 0;
      let checked = 0;
      let postFailures = 0;
      const results = await alternate(
        ctx,
        (Object.keys(contenders) as Name[]).map((name) => ({
          name,
          async measure() {
            const c = contenders[name];
            const posts: Post[] = [];
            let n = 0;
            // The steady flow: 10 alarms/s, round-robin over the devices, until told to stop.
            let flowing = true;
            const flow = (async () => {
              while (flowing) {
                const t = Date.now();
                try {
                  posts.push(await c.post(n++ % DEVICES));
                } catch {
                  postFailures++; // not stored: nobody is owed it
                }
                await sleep(Math.max(0, 100 - (Date.now() - t)));
              }
            })();
            try {
              await sleep(1000);
              await load!.drop(c.urlPrefix);
              // One alarm on every device while everyone is away: each subscriber has one to replay.
              for (let d = 0; d < DEVICES; d++) posts.push(await c.post(d));
              const t0 = wallMs();
              const r = await load!.reconnect(c.urlPrefix, spreadMs, 20_000);
              if (process.env.BENCH_VERBOSE) console.log(name, r, t0);
              await sleep(1000);
              flowing = false;
              await flow;
              const got = await collect(load!, posts, 10_000);
              lost += got.missing;
              duplicated += got.duplicates;
              notReestablished += r.pending + r.reopenFailed;
              checked += got.received;
              return r.last - t0;
            } finally {
              flowing = false;
              await flow;
            }
          },
        })),
        (ms) => `${(ms / 1000).toFixed(2)} s`,
      );
      const ours = median(results.get('Vigil')!);
      const peer = median(results.get('P4 graphql-ws')!);
      const clean = lost === 0 && duplicated === 0 && notReestablished === 0;
      const rows: ResultRow[] = [
        {
          scenario: 'S4',
          metric: `time until all ${subscribers} subscribers re-established after a drop (reconnects spread over ${spreadMs} ms)`,
          unit: 'ms',
          ours,
          peers: [{ name: 'P4 graphql-ws', value: peer }],
          goal: '<= 1.5x P4; no alarm lost or duplicated',
          pass: ours <= 1.5 * peer && clean,
          ratio: `${ratio(ours, peer)} P4`,
          note:
            `from the first reconnect to the last subscriber's first message after resubscribing (a replayed alarm); alarms at 10/s over ${DEVICES} devices; ` +
            `over all rounds and both contenders: ${checked} deliveries checked, ${lost} lost, ${duplicated} duplicated, ${notReestablished} not re-established, ${postFailures} posts failed`,
        },
      ];
      return rows;
    } finally {
      await Promise.allSettled([load?.stop(), p4?.stop(), vigil?.stop()]);
    }
  },
};
export default scenario;
