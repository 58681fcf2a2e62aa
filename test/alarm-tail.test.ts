import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { compareAlarmCursors, type AlarmCursor } from '../src/streams/alarms/alarm-cursor';
import type { AlarmRow } from '../src/streams/alarms/alarm-store';
import { createEventBus } from '../src/streams/bus/event-bus';
import { createAlarmTailer } from '../src/streams/live/alarm-tail';

/**
 * The alarms table as the tailer sees it: transactions take an xid when they begin, rows a seq
 * when inserted, and a read returns only committed rows below its horizon (the smallest xid
 * still running), exactly as the store's `tailAfter` does on Postgres.
 */
function model() {
  const committed: AlarmRow[] = [];
  const running = new Set<number>();
  let nextXid = 11;
  let nextSeq = 1;
  let handTo: ((rows: AlarmRow[]) => void) | undefined;
  /** While set, a read waits for it after taking its snapshot (a slow round trip). */
  let gate: Promise<void> | null = null;
  const reads: Array<{ after: AlarmCursor; skip: readonly string[] }> = [];
  let ends = 0;

  const horizon = () => Math.min(nextXid, ...running);
  const store = {
    async tailEnd(): Promise<AlarmCursor> {
      ends++;
      const h = horizon();
      const last = committed.filter((r) => r.xid < h).sort(compareAlarmCursors).at(-1);
      return last ? { xid: last.xid, seq: last.seq } : { xid: 0, seq: 0 };
    },
    async tailAfter(after: AlarmCursor, limit: number, skip: readonly string[] = []) {
      reads.push({ after, skip });
      const h = horizon();
      const rows = committed
        .filter((r) => r.xid < h && compareAlarmCursors(r, after) > 0 && !skip.includes(r.id))
        .sort(compareAlarmCursors)
        .slice(0, limit);
      if (gate) await gate;
      return { rows, horizon: h };
    },
    onCreatedHere(listener: (rows: AlarmRow[]) => void) {
      handTo = listener;
      return () => (handTo = undefined);
    },
  };

  return {
    store,
    reads,
    /** Hands rows to the tailer the way the store does after a commit on this node. */
    hand: (rows: AlarmRow[]) => handTo?.(rows.map((r) => ({ ...r }))),
    endReads: () => ends,
    holdReads() {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = null;
        release();
      };
    },
    begin() {
      const xid = nextXid++;
      running.add(xid);
      const rows: AlarmRow[] = [];
      return {
        insert(): AlarmRow {
          const seq = nextSeq++;
          const row = { id: `a${xid}-${seq}`, xid, seq } as unknown as AlarmRow;
          rows.push(row);
          return row;
        },
        /** Commits; `local` hands the rows to this node's tailer as the store does after its own commits. */
        commit(local: boolean) {
          running.delete(xid);
          committed.push(...rows);
          if (local) handTo?.(rows.map((r) => ({ ...r })));
        },
        abort() {
          running.delete(xid);
        },
      };
    },
  };
}

const settle = () => new Promise((r) => setTimeout(r, 20));
async function waitUntil(ok: () => boolean, what: string) {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(ok(), what);
}

async function tailerOn(m: ReturnType<typeof model>, options: { batch?: number; idleAfterMs?: number } = {}) {
  const tailer = createAlarmTailer({ store: m.store, bus: createEventBus(), log: pino({ level: 'silent' }), tickMs: 60_000, ...options });
  tailer.start();
  const got: string[] = [];
  const reg = await tailer.register((r) => got.push(r.id));
  return { tailer, got, reg };
}

describe('alarm tailer: rows handed over by the store', () => {
  test('holds a handed row back until the older transaction that holds the horizon commits, then delivers both in cursor order', async () => {
    const m = model();
    const { tailer, got } = await tailerOn(m);
    try {
      const t1 = m.begin();
      const early = t1.insert();
      const t2 = m.begin();
      const late = t2.insert();
      t2.commit(true);
      // Reads (woken by the hand-over, then polling the horizon) must not let the later row through.
      await waitUntil(() => m.reads.length >= 3, 'the tailer reads while T1 is open');
      assert.deepEqual(got, [], 'nothing delivered past the horizon');
      assert.ok(m.reads.at(-1)!.skip.includes(late.id), 'the handed row is not read back');
      t1.commit(false);
      tailer.wake();
      await waitUntil(() => got.length >= 2, 'both delivered');
      await settle();
      assert.deepEqual(got, [early.id, late.id]);
    } finally {
      await tailer.stop();
    }
  });

  test('delivers a row once when it is handed over while a read that returns it is in flight', async () => {
    const m = model();
    const { tailer, got } = await tailerOn(m);
    try {
      const t = m.begin();
      const row = t.insert();
      // The row commits, a read takes its snapshot (the row not skipped), then the hand-over arrives.
      t.commit(false);
      const release = m.holdReads();
      tailer.wake();
      await waitUntil(() => m.reads.length >= 1, 'a read started');
      m.hand([row]);
      release();
      await waitUntil(() => got.length >= 1, 'delivered');
      tailer.wake();
      await settle();
      assert.deepEqual(got, [row.id]);
    } finally {
      await tailer.stop();
    }
  });

  test('drops a handed row that a read already delivered', async () => {
    const m = model();
    const { tailer, got } = await tailerOn(m);
    try {
      const t = m.begin();
      const row = t.insert();
      t.commit(false);
      tailer.wake();
      await waitUntil(() => got.length >= 1, 'read and delivered');
      m.hand([row]);
      await settle();
      tailer.wake();
      await settle();
      assert.deepEqual(got, [row.id]);
    } finally {
      await tailer.stop();
    }
  });

  test('does not let a handed row overtake rows a full read has not reached yet', async () => {
    const m = model();
    const { tailer, got } = await tailerOn(m, { batch: 2 });
    try {
      const remote = [m.begin(), m.begin(), m.begin()].map((t) => ({ t, row: t.insert() }));
      const local = m.begin();
      const mine = local.insert();
      for (const { t } of remote) t.commit(false);
      local.commit(true);
      await waitUntil(() => got.length >= 4, 'all delivered');
      await settle();
      assert.deepEqual(got, [...remote.map((r) => r.row.id), mine.id]);
    } finally {
      await tailer.stop();
    }
  });

  test('never delivers the rows of a transaction that did not commit', async () => {
    const m = model();
    const { tailer, got } = await tailerOn(m);
    try {
      const failed = m.begin();
      failed.insert();
      const ok = m.begin();
      const row = ok.insert();
      failed.abort();
      ok.commit(true);
      await waitUntil(() => got.length >= 1, 'the committed row delivered');
      tailer.wake();
      await settle();
      assert.deepEqual(got, [row.id]);
    } finally {
      await tailer.stop();
    }
  });
});

describe('alarm tailer: nobody listening', () => {
  test('does not read while no one listens, and starts the next listener at the end of the table', async () => {
    const m = model();
    const { tailer, got, reg } = await tailerOn(m, { idleAfterMs: 0 });
    try {
      reg.unregister();
      await settle();
      const before = m.reads.length;
      for (let i = 0; i < 3; i++) {
        const t = m.begin();
        t.insert();
        t.commit(true);
      }
      tailer.wake();
      await settle();
      assert.equal(m.reads.length, before, 'no read without listeners');
      const ends = m.endReads();
      const later: string[] = [];
      const second = await tailer.register((r) => later.push(r.id));
      assert.equal(m.endReads(), ends + 1, 'looked up the end of the table once');
      assert.deepEqual(second.position, { xid: 13, seq: 3 });
      const t = m.begin();
      const row = t.insert();
      t.commit(true);
      await waitUntil(() => later.length >= 1, 'the new listener gets the next row');
      await settle();
      assert.deepEqual(later, [row.id]);
      assert.deepEqual(got, []);
    } finally {
      await tailer.stop();
    }
  });
});
