import { createSourceEventStream, execute, subscribe as graphqlSubscribe, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { DomainError } from '../../lib/domain-error';
import { ErrorCode, toErrorCode } from '../../schema/error-code';
import { comparePositions, handoverOf, type HandoverFeed } from '../../streams/live/live.service';

type Results = AsyncGenerator<ExecutionResult, unknown, unknown>;
type Position = ReturnType<HandoverFeed['position']>;

/** What the fan-out needs to know about one subscriber (graphql-ws's connection, in practice). */
export interface FanoutMember {
  /** Called once when the member is cut off as a slow consumer (its queue stayed full for `slowAfterMs`). */
  onSlow(): void;
  /**
   * Writes one already serialised result (`{"data":...}` as UTF-8) to the subscriber at once,
   * bypassing graphql-ws's per-socket execution hooks and stringify. Returns false when it cannot
   * decide synchronously (e.g. the credential must be read again): the result then takes the
   * queued path (graphql-ws's `onNext`). Called only while nothing of this member is queued or
   * being delivered, so order is kept.
   */
  deliver?(serialised: Buffer): boolean;
}

export interface FanoutOptions {
  /** Undelivered results one member may hold (default 1000). */
  maxPending?: number;
  /**
   * A member whose queue stays full this long (default 5000 ms) is a slow consumer and is cut off.
   * Until then the whole group waits for it: a burst larger than the queue slows the group, it does
   * not drop anyone.
   */
  slowAfterMs?: number;
  /** Called with +1/-1 as subscriptions start and end, and as groups open and close (metrics). */
  onCount?(what: 'subscriptions' | 'groups', delta: 1 | -1): void;
  /**
   * How long (default 1000 ms) the result of one event of a resumable group (alarms) is reused by
   * the group's resumed members that replay the same event: in a reconnect storm the members of a
   * group resume from the same cursor and replay the same alarms, and execute each once, not once
   * per member. Nested data read during execution (the device's name and status) is then up to
   * this old, as a queued group result may be. 0 turns it off.
   */
  reuseMs?: number;
}

/**
 * A subscriber's results: a queue the group pushes into and graphql-ws pulls from. `return()`
 * (graphql-ws calls it on `complete` and on close) ends it at once, even while a pull is pending.
 */
class MemberQueue implements AsyncGenerator<ExecutionResult, unknown, unknown> {
  private items: ExecutionResult[] = [];
  private waiter: { resolve(r: IteratorResult<ExecutionResult>): void; reject(err: unknown): void } | null = null;
  /** The source ended or failed: what the consumer gets once the queue is drained. */
  private terminal: { failed: false } | { failed: true; err: unknown } | null = null;
  private done = false;
  /** While a resumed member hands over from its own replay to the group: the group's results, kept in order. */
  held: { result: ExecutionResult; at: Position | null; serialise: () => Buffer | null }[] | null = null;
  /** The group's results up to here were delivered by the member's own replay: skipped. */
  skipUpTo: Position | null = null;

  constructor(
    readonly member: FanoutMember,
    /** Called once when the member ends. */
    public onEnd: () => void,
    /** Called whenever the consumer takes a result (the group may be waiting for room). */
    public onTake: () => void,
  ) {}

  get pending(): number {
    return this.items.length;
  }

  get ended(): boolean {
    return this.done;
  }

  /** Nothing queued and the consumer waiting for the next result: a direct write keeps the order. */
  get idle(): boolean {
    return this.waiter !== null && this.items.length === 0 && !this.terminal && !this.done;
  }

  push(result: ExecutionResult): void {
    if (this.done || this.terminal) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: result, done: false });
    } else {
      this.items.push(result);
    }
  }

  /** The source ended: deliver what is queued, then end. */
  end(): void {
    if (this.done || this.terminal) return;
    this.terminal = { failed: false };
    if (this.waiter) this.finish();
  }

  /** The source failed: deliver what is queued, then reject with `err`. */
  fail(err: unknown): void {
    if (this.done || this.terminal) return;
    this.terminal = { failed: true, err };
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    this.finish();
    w.reject(err);
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    this.items = [];
    const w = this.waiter;
    this.waiter = null;
    w?.resolve({ value: undefined, done: true });
    this.onEnd();
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    const item = this.items.shift();
    if (item) {
      this.onTake();
      return Promise.resolve({ value: item, done: false });
    }
    const terminal = this.terminal;
    if (terminal || this.done) {
      this.finish();
      return terminal?.failed ? Promise.reject(terminal.err) : Promise.resolve({ value: undefined, done: true });
    }
    this.onTake();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<ExecutionResult>> {
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(): Promise<IteratorResult<ExecutionResult>> {
    return this.return();
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

interface Group {
  key: string;
  args: ExecutionArgs;
  members: Set<MemberQueue>;
  ready: Promise<ExecutionResult | null>;
  /** The source events (graphql-js's source stream): executed once per event for every member. */
  source: AsyncGenerator<unknown, unknown, unknown> | null;
  /** The source's handover positions, when it has them (alarms): resumed members may join. */
  feed: HandoverFeed | null;
  pumping: boolean;
  closed: boolean;
  /** Wakes the pump when a member took a result or left. */
  room: () => void;
}

/** The result as graphql-ws would put it in a `next` payload (no errors here: those take the hooks). */
function serialiseResult(result: ExecutionResult): Buffer | null {
  try {
    return Buffer.from(JSON.stringify(result));
  } catch {
    return null;
  }
}

const isAsyncIterable = <T = Results>(v: unknown): v is T => typeof Object(v)[Symbol.asyncIterator] === 'function';
type Source = AsyncGenerator<unknown, unknown, unknown>;

/**
 * An event the subscriber may no longer see: access ended between the stream's check and the
 * execution (its nested `device` was NOT_FOUND). Dropped, not sent as an error.
 */
export function isInvisible(result: ExecutionResult): boolean {
  if (!result.errors?.length || result.data) return false;
  return result.errors.every((e) => {
    const original = e.originalError;
    return original instanceof DomainError && toErrorCode(original) === ErrorCode.NOT_FOUND;
  });
}

/** `source` without invisible results; `return()` reaches the source at once (no pending-pull leak). */
function visibleOnly(source: Results, onEnd: () => void): Results {
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  const it: Results = {
    async next() {
      for (;;) {
        let r: IteratorResult<ExecutionResult>;
        try {
          r = await source.next();
        } catch (err) {
          end();
          throw err;
        }
        if (r.done) end();
        if (r.done || !isInvisible(r.value)) return r;
      }
    },
    async return(value?: unknown) {
      end();
      return (await source.return?.(value)) ?? { value: undefined, done: true };
    },
    async throw(err?: unknown) {
      end();
      if (source.throw) return source.throw(err);
      throw err;
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/** `execute` of one source event, as graphql-js's `subscribe` maps it. */
const executeEvent = (args: ExecutionArgs, event: unknown) => execute({ ...args, rootValue: event });

/** Executions kept for reuse at most (each a result and its bytes, well under a KiB for an alarm). */
const MAX_REUSED_EXECUTIONS = 10_000;

/** One event's execution for a group key, shared while it is fresh; its bytes serialised once. */
interface SharedExecution {
  until: number;
  result: Promise<ExecutionResult>;
  serialised?: Buffer | null;
}

/**
 * Subscription fan-out for graphql-ws's `subscribe` option. Subscribers that share a group key
 * (same document, variables, operation name and caller identity with its API-key scopes) share ONE
 * source stream: the selection set runs once per event, the result is serialised once, and the
 * same bytes go to every member's socket (`FanoutMember.deliver`); a member without `deliver`, or
 * busy, gets the ExecutionResult object through graphql-ws.
 *
 * Resumed subscriptions (`alarms(after:)`, see `subscribe`'s `resume`) replay alone (an event
 * the group or another member replaying it executed less than `reuseMs` ago is not executed
 * again), and join the group of the same subscription without `after`
 * once their replay has caught up; the handover keeps every event once and in order (the
 * positions of HandoverFeed in src/streams/live/live.service.ts). A reconnect storm then costs
 * one execution per event per group, not per subscriber.
 *
 * Flow control: each member has a queue of up to `maxPending` results. While a member's queue is
 * full the group stops pulling from its stream (which then buffers or, for alarms, catches up from
 * the database); a member whose queue stays full for `slowAfterMs` is cut off (`onSlow`) and the
 * group goes on. Memory per member is bounded either way. The group's stream ends when its last
 * member leaves. Subscriptions without a key run alone, as graphql-ws would run them.
 */
export function createSubscriptionFanout(opts: FanoutOptions = {}) {
  const maxPending = opts.maxPending ?? 1000;
  const slowAfterMs = opts.slowAfterMs ?? 5000;
  const count = opts.onCount ?? (() => {});
  const reuseMs = opts.reuseMs ?? 1000;
  const groups = new Map<string, Group>();
  /** By group key and event (its JSON: every field execution reads from it), oldest first. */
  const executions = new Map<string, SharedExecution>();
  /** Resumed members still replaying, by group key: only while there are any does a group keep its executions for them. */
  const replaying = new Map<string, number>();
  let releasing = false;

  /** Once nobody replays, what is kept expires within `reuseMs`: let it go then (an idle node holds no results). */
  function releaseExecutions() {
    if (releasing || replaying.size > 0 || executions.size === 0) return;
    releasing = true;
    setTimeout(() => {
      releasing = false;
      if (replaying.size === 0) executions.clear();
    }, reuseMs).unref();
  }

  /**
   * The execution of `event` for the group `key` (on the group's arguments `args`), reused while
   * fresh: the same event with the same document, variables and caller visibility gives the same
   * result, as it does for a group's members.
   */
  function executeShared(key: string, args: ExecutionArgs, event: unknown): SharedExecution {
    let eventKey: string | undefined;
    try {
      eventKey = reuseMs > 0 ? JSON.stringify(event) : undefined;
    } catch {
      eventKey = undefined;
    }
    const run = () => Promise.resolve().then(() => executeEvent(args, event));
    if (eventKey === undefined) return { until: 0, result: run() };
    const now = Date.now();
    for (const [k, e] of executions) {
      if (e.until > now && executions.size < MAX_REUSED_EXECUTIONS) break;
      executions.delete(k);
    }
    const id = `${key}\0${eventKey}`;
    const hit = executions.get(id);
    if (hit && hit.until > now) return hit;
    const entry: SharedExecution = { until: now + reuseMs, result: run() };
    executions.set(id, entry);
    // A failure is not shared: the next member executes again.
    entry.result.catch(() => executions.get(id) === entry && executions.delete(id));
    return entry;
  }

  /** The bytes of a shared execution's result (none when it has errors: those take graphql-ws's hooks). */
  const serialisedOf = (e: SharedExecution, result: ExecutionResult) => () => (e.serialised ??= result.errors?.length ? null : serialiseResult(result));

  function closeGroup(group: Group) {
    if (group.closed) return;
    group.closed = true;
    group.room();
    if (groups.get(group.key) === group) groups.delete(group.key);
    count('groups', -1);
    void group.source?.return?.(undefined)?.catch(() => {});
  }

  /** Waits until no queue of `members()` is full; cuts off those still full after `slowAfterMs`. */
  async function makeRoom(members: () => Iterable<MemberQueue>, isClosed: () => boolean, setRoom: (wake: () => void) => void) {
    const full = () => [...members()].filter((m) => m.pending >= maxPending);
    if (full().length === 0) return;
    const deadline = Date.now() + slowAfterMs;
    while (!isClosed() && full().length > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        setRoom(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      setRoom(() => {});
    }
    for (const m of full()) {
      m.finish();
      m.member.onSlow();
    }
  }

  /** One result to one member: written at once when it is idle and can take the serialised bytes, else queued. */
  function deliverTo(m: MemberQueue, result: ExecutionResult, serialise: () => Buffer | null) {
    if (m.member.deliver && m.idle) {
      const serialised = serialise();
      if (serialised && m.member.deliver(serialised)) return;
    }
    m.push(result);
  }

  /**
   * One result to every member. Results without errors are serialised ONCE and written straight
   * to each idle member's socket (the same bytes for all; only the frame's id differs); the rest,
   * and members that are busy or cannot decide at once, get the result queued. A member handing
   * over from its replay holds the result; one whose replay delivered it skips it.
   */
  function deliverAll(group: Group, result: ExecutionResult, at: Position | null) {
    let serialised: Buffer | null | undefined;
    const serialise = () => (serialised ??= result.errors?.length ? null : serialiseResult(result));
    for (const m of [...group.members]) {
      if (m.held) {
        m.held.push({ result, at, serialise });
        continue;
      }
      if (m.skipUpTo && at) {
        if (comparePositions(at, m.skipUpTo) <= 0) continue;
        m.skipUpTo = null; // past it: results come in order
      }
      deliverTo(m, result, serialise);
    }
  }

  async function pump(group: Group) {
    const source = group.source!;
    try {
      while (!group.closed) {
        await makeRoom(
          () => group.members,
          () => group.closed,
          (wake) => (group.room = wake),
        );
        if (group.closed) break;
        const r = await source.next();
        if (r.done) break;
        // Resumable groups (alarms) share executions with their members' replays.
        const result = await (group.feed && replaying.has(group.key) ? executeShared(group.key, group.args, r.value).result : executeEvent(group.args, r.value));
        if (isInvisible(result)) continue;
        deliverAll(group, result, group.feed?.positionOf(r.value) ?? null);
      }
      for (const m of [...group.members]) m.end();
    } catch (err) {
      for (const m of [...group.members]) m.fail(err);
    } finally {
      closeGroup(group);
    }
  }

  /** Adds `queue` to the group; returns its leaving (the group closes with its last member). */
  function enter(group: Group, queue: MemberQueue): () => void {
    group.members.add(queue);
    if (!group.pumping) {
      group.pumping = true;
      void pump(group);
    }
    return () => {
      if (!group.members.delete(queue)) return;
      if (group.members.size === 0) closeGroup(group);
      else group.room();
    };
  }

  /** The open group of `key`, or a new one on `args`; an ExecutionResult when the subscription is refused. */
  async function groupFor(key: string, args: ExecutionArgs): Promise<Group | ExecutionResult> {
    for (;;) {
      let group = groups.get(key);
      if (!group) {
        const g: Group = { key, args, members: new Set(), ready: Promise.resolve(null), source: null, feed: null, pumping: false, closed: false, room: () => {} };
        group = g;
        groups.set(key, g);
        count('groups', 1);
        g.ready = Promise.resolve(createSourceEventStream(args)).then(
          (result): ExecutionResult | null => {
            if (isAsyncIterable<AsyncIterable<unknown>>(result)) {
              g.source = result as Source;
              g.feed = handoverOf(result);
              return null;
            }
            closeGroup(g);
            return result;
          },
          (err: unknown) => {
            closeGroup(g);
            throw err;
          },
        );
      }
      const refused = await group.ready;
      if (refused) return refused;
      // Its members all left while this one waited: start a new group.
      if (group.closed) continue;
      return group;
    }
  }

  /**
   * A resumed subscription: its own source replays, its events executed as the group would
   * execute them (shared with the group and with other members replaying the same event while
   * fresh, `executeShared`); once the replay has caught up it joins the group of `key` (opened
   * on `liveArgs` when none is open) at the group's position, its own source ends there, and the group's results after where the
   * own source ended follow, held meanwhile.
   */
  function resumeAlone(source: Source, feed: HandoverFeed | null, key: string, liveArgs: ExecutionArgs, member: FanoutMember): MemberQueue {
    let closed = false;
    let room = () => {};
    let group: Group | null = null;
    let leaveGroup: (() => void) | null = null;
    let endedAt: Promise<Position> | null = null;
    count('subscriptions', 1);
    replaying.set(key, (replaying.get(key) ?? 0) + 1);
    let replayDone = false;
    const doneReplaying = () => {
      if (replayDone) return;
      replayDone = true;
      const n = (replaying.get(key) ?? 1) - 1;
      if (n > 0) replaying.set(key, n);
      else replaying.delete(key);
      releaseExecutions();
    };
    const queue: MemberQueue = new MemberQueue(
      member,
      () => {
        closed = true;
        doneReplaying();
        count('subscriptions', -1);
        room();
        leaveGroup?.();
        void source.return?.(undefined)?.catch(() => {});
      },
      () => {
        room();
        group?.room();
      },
    );

    async function join() {
      if (!feed) return;
      await feed.caughtUp;
      if (closed) return;
      let g: Group | ExecutionResult | null;
      // A group can close between its lookup and this turn (its last member left): look again.
      do g = await groupFor(key, liveArgs).catch(() => null);
      while (g && 'members' in g && g.closed && !closed);
      // Refused or failed: the subscription stays on its own stream.
      if (!g || !('members' in g) || !g.feed || closed) return;
      // Synchronously from here: every event after the group's position reaches this member from the group.
      group = g;
      queue.held = [];
      leaveGroup = enter(g, queue);
      endedAt = feed.endAt(g.feed.position());
    }

    void (async () => {
      const joining = join();
      try {
        while (!closed) {
          await makeRoom(
            () => [queue],
            () => closed,
            (wake) => (room = wake),
          );
          if (closed) break;
          const r = await source.next();
          if (r.done) break;
          // Executed as the group would (`liveArgs`: `after` feeds only the source), once for every member replaying it.
          const shared = executeShared(key, liveArgs, r.value);
          const result = await shared.result;
          if (isInvisible(result)) continue;
          deliverTo(queue, result, serialisedOf(shared, result));
        }
        await joining;
        if (closed) return;
        if (!endedAt) {
          queue.end();
          return;
        }
        // Handed over: the group's results after where the own source ended follow, then the group's own.
        const ended = await endedAt;
        const held = queue.held ?? [];
        queue.held = null;
        queue.skipUpTo = ended;
        for (const h of held) {
          if (h.at && queue.skipUpTo && comparePositions(h.at, queue.skipUpTo) <= 0) continue;
          queue.skipUpTo = null;
          deliverTo(queue, h.result, h.serialise);
        }
      } catch (err) {
        queue.fail(err);
      } finally {
        doneReplaying();
      }
    })();
    return queue;
  }

  return {
    /**
     * Subscribes `args`: alone when `key` is null, else in the group of `key`. With `resume`, a
     * subscription that replays first (`alarms(after:)`): it runs alone until its replay caught
     * up, then joins the group of `key` (the same subscription without `after`: `resume.liveArgs`).
     * Returns what graphql-ws expects: the results, or an ExecutionResult with the errors of a
     * refused subscription.
     */
    async subscribe(args: ExecutionArgs, key: string | null, member: FanoutMember, resume?: { liveArgs: ExecutionArgs }): Promise<Results | ExecutionResult> {
      if (key === null) {
        const result = await graphqlSubscribe(args);
        if (!isAsyncIterable(result)) return result;
        count('subscriptions', 1);
        return visibleOnly(result, () => count('subscriptions', -1));
      }
      if (resume) {
        const source = await createSourceEventStream(args);
        if (!isAsyncIterable<AsyncIterable<unknown>>(source)) return source;
        return resumeAlone(source as Source, handoverOf(source), key, resume.liveArgs, member);
      }
      const group = await groupFor(key, args);
      if (!('members' in group)) return group;
      count('subscriptions', 1);
      let leave = () => {};
      const queue = new MemberQueue(
        member,
        () => {
          count('subscriptions', -1);
          leave();
        },
        () => group.room(),
      );
      leave = enter(group, queue);
      return queue;
    },

    /** Open groups (tests, metrics). */
    groupCount: () => groups.size,
  };
}

export type SubscriptionFanout = ReturnType<typeof createSubscriptionFanout>;
