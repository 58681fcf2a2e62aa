// The one operation pipeline for both transports (HTTP in src/http/graphql.route.ts, graphql-ws in
// src/graphql/live/graphql-ws.ts). No transport here: a transport turns its request into an
// OperationRequest, calls `prepare`, answers a refusal in its own way (HTTP status, graphql-ws
// `error` message), builds the context with the one builder (src/schema/context.ts) and runs
// `execute` (or, for subscriptions, graphql-ws's subscribe).
import { createHash } from 'node:crypto';
import {
  execute as graphqlJsExecute,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  Kind,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { ErrorCode } from '../schema/error-code';
import { assertCost, GRAPHQL_LIMITS, limitRules, usesIntrospection, withinTokenLimit } from './edge-limits';
import { createJitExecutor, type GraphqlExecutorKind } from './jit-executor';
import { Lru } from '../lib/lru';
import { refusalStatus } from './errors';

/** What a client sent, as the transport received it (nothing trusted yet). */
export interface OperationRequest {
  query?: unknown;
  variables?: unknown;
  operationName?: unknown;
  /** `extensions.persistedQuery` ({ version: 1, sha256Hash }) for automatic persisted queries. */
  extensions?: unknown;
}

/** Who is asking and how: the parts of the caller and transport the pipeline's rules need. */
export interface OperationOrigin {
  transport: 'http' | 'ws';
  /** HTTP method: GET may only run queries. */
  method?: string;
  /** Signed in (introspection is closed to anonymous callers in production). */
  authenticated: boolean;
}

/** A parsed, validated, limited operation whose variables coerce: ready to execute. */
export interface ReadyOperation {
  ok: true;
  /** The query text (from the request or the persisted-query store). */
  query: string;
  document: DocumentNode;
  operation: OperationDefinitionNode;
  operationName: string | undefined;
  variables: Record<string, unknown> | undefined;
  /** `query.me`-style label for metrics (root field names come from the validated schema, so the set is bounded). */
  label: string;
}

/** Refused before execution: errors carry a contract code; `status` is the HTTP status for them. */
export interface RefusedOperation {
  ok: false;
  status: number;
  errors: readonly GraphQLError[];
  headers?: Record<string, string>;
}

export type PreparedOperation = ReadyOperation | RefusedOperation;

export interface PipelineOptions {
  schema: GraphQLSchema;
  production: boolean;
  /** `jit` (default): compiled queries; `graphql-js`: the reference interpreter. */
  executor?: GraphqlExecutorKind;
  /** Told once per (document, operation) that jit could not compile it. */
  onJitFallback?: (operationName: string | null, reason: string) => void;
  /** Distinct valid documents kept parsed and validated (default 1000; least recently used dropped). */
  maxDocuments?: number;
  /** Persisted queries remembered by hash (default 1000). */
  maxPersisted?: number;
}

/** Nesting of variable values: no input type of the contract is deeper than a handful of levels. */
const MAX_VARIABLE_DEPTH = 32;
/** A NUL, or a UTF-16 surrogate without its pair: neither can be stored or sent on as text. */
const UNSAFE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** An error refused with a contract code. */
export const refusal = (code: ErrorCode, message: string, nodes?: GraphQLError['nodes']) => new GraphQLError(message, { nodes, extensions: { code } });

const refused = (errors: readonly GraphQLError[], status?: number, headers?: Record<string, string>): RefusedOperation => ({
  ok: false,
  // The first error decides: a refusal that a caller may fix (sign in) is told before the rest.
  status: status ?? refusalStatus(errors[0]?.extensions.code),
  errors,
  headers,
});

/** String literals in documents hold no NUL and no lone surrogate, like string variables. */
const wellFormedStrings: ValidationRule = (context: ValidationContext) => ({
  StringValue(node) {
    if (UNSAFE_TEXT.test(node.value)) context.reportError(refusal(ErrorCode.BAD_USER_INPUT, 'Strings must not contain NUL characters or unpaired surrogates', [node]));
  },
});

const RULES: readonly ValidationRule[] = [...specifiedRules, ...limitRules, wellFormedStrings];

/** Tells what is wrong with variable values that no GraphQL type may hold: depth, NUL, lone surrogates. */
function unsafeVariables(value: unknown): string | null {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  while (stack.length) {
    const { v, depth } = stack.pop()!;
    if (typeof v === 'string') {
      if (UNSAFE_TEXT.test(v)) return 'Variables must not contain NUL characters or unpaired surrogates';
    } else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_VARIABLE_DEPTH) return `Variables are nested deeper than ${MAX_VARIABLE_DEPTH} levels`;
      for (const [k, child] of Object.entries(v)) {
        if (UNSAFE_TEXT.test(k)) return 'Variables must not contain NUL characters or unpaired surrogates';
        stack.push({ v: child, depth: depth + 1 });
      }
    }
  }
  return null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

function labelOf(operation: OperationDefinitionNode): string {
  const first = operation.selectionSet.selections.find((s) => s.kind === Kind.FIELD);
  return first?.kind === Kind.FIELD ? `${operation.operation}.${first.name.value}` : 'unknown';
}

/**
 * Builds the pipeline for one schema. `prepare` never throws for anything a client sends: every
 * refusal comes back as errors with a contract code (BAD_USER_INPUT, QUERY_TOO_COMPLEX,
 * UNAUTHENTICATED) and its HTTP status. `execute` has graphql-js's signature, so it plugs into
 * graphql-http's and graphql-ws's `execute` options alike.
 */
export function createOperationPipeline(options: PipelineOptions) {
  const { schema, production } = options;
  const documents = new Lru<{ document: DocumentNode; key: string }>(options.maxDocuments ?? 1000);
  const documentKeys = new WeakMap<DocumentNode, string>();
  const persisted = new Lru<string>(options.maxPersisted ?? 1000);
  const jit = (options.executor ?? 'jit') === 'jit' ? createJitExecutor(schema, { onFallback: options.onJitFallback }) : null;

  /** The query text: sent, or looked up by its persisted hash (Apollo's APQ protocol and wording). */
  function queryOf(request: OperationRequest): { query: string; persistAs?: string } | RefusedOperation {
    if (request.extensions != null && !isObject(request.extensions)) return refused([refusal(ErrorCode.BAD_USER_INPUT, '`extensions` must be an object if provided.')]);
    const pq = isObject(request.extensions) ? request.extensions.persistedQuery : undefined;
    if (pq !== undefined) {
      if (!isObject(pq) || typeof pq.sha256Hash !== 'string') return refused([refusal(ErrorCode.BAD_USER_INPUT, 'Invalid persisted query')]);
      if (pq.version !== 1) return refused([refusal(ErrorCode.BAD_USER_INPUT, 'Unsupported persisted query version')]);
      const hash = pq.sha256Hash.toLowerCase();
      if (request.query == null) {
        const query = persisted.get(hash);
        // 200, as Apollo answers it: APQ clients read it as "send the full query once".
        if (query === undefined) return refused([refusal(ErrorCode.BAD_USER_INPUT, 'PersistedQueryNotFound')], 200);
        return { query };
      }
      if (typeof request.query === 'string' && sha256Hex(request.query) !== hash) {
        return refused([refusal(ErrorCode.BAD_USER_INPUT, 'provided sha does not match query')]);
      }
      if (typeof request.query === 'string') return { query: request.query, persistAs: hash };
    }
    if (request.query == null || request.query === '') return refused([refusal(ErrorCode.BAD_USER_INPUT, 'GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.')]);
    if (typeof request.query !== 'string') return refused([refusal(ErrorCode.BAD_USER_INPUT, 'GraphQL queries must be strings.')]);
    return { query: request.query };
  }

  /** Parsed and validated once per distinct text; only valid documents are kept. */
  function documentOf(query: string): { document: DocumentNode } | RefusedOperation {
    const hit = documents.get(query);
    if (hit) return hit;
    if (!withinTokenLimit(query)) return refused([refusal(ErrorCode.QUERY_TOO_COMPLEX, 'Query has too many tokens')]);
    let document: DocumentNode;
    try {
      document = parse(query);
    } catch (e) {
      const err = e instanceof GraphQLError ? e : new GraphQLError('Cannot parse the query');
      return refused([new GraphQLError(err.message, { nodes: err.nodes, source: err.source, positions: err.positions, extensions: { code: ErrorCode.BAD_USER_INPUT } })]);
    }
    const errors = validate(schema, document, RULES);
    if (errors.length) {
      // Limit rules tag their errors; the rest (graphql-js's own rules) are malformed requests.
      const tagged = errors.map((e) =>
        e.extensions.code ? e : new GraphQLError(e.message, { nodes: e.nodes, source: e.source, positions: e.positions, extensions: { code: ErrorCode.BAD_USER_INPUT } }),
      );
      // A limit refusal decides the status and code order: the rest is noise about the same document.
      tagged.sort((a, b) => Number(b.extensions.code === ErrorCode.QUERY_TOO_COMPLEX) - Number(a.extensions.code === ErrorCode.QUERY_TOO_COMPLEX));
      return refused(tagged);
    }
    const entry = { document, key: sha256Hex(query) };
    documentKeys.set(document, entry.key);
    documents.set(query, entry);
    return entry;
  }

  /**
   * Parse (cached), validate (graphql-js rules, depth/alias/directive/token limits, well-formed
   * strings), resolve the operation, check the transport (no subscriptions over HTTP, no mutations
   * over GET), the introspection gate, the variables (depth, NUL and lone surrogates, coercion)
   * and the cost. Never throws for client input.
   */
  function prepare(request: OperationRequest, origin: OperationOrigin): PreparedOperation {
    const q = queryOf(request);
    if ('ok' in q) return q;
    const d = documentOf(q.query);
    if ('ok' in d) return d;
    const { document } = d;
    if (q.persistAs) persisted.set(q.persistAs, q.query);

    if (request.operationName != null && typeof request.operationName !== 'string') return refused([refusal(ErrorCode.BAD_USER_INPUT, '`operationName` must be a string if provided.')]);
    const operationName = request.operationName ?? undefined;
    const operation = getOperationAST(document, operationName);
    if (!operation) {
      return refused([refusal(ErrorCode.BAD_USER_INPUT, operationName ? `Unknown operation named "${operationName}".` : 'Must provide operation name if query contains multiple operations.')]);
    }
    if (origin.transport === 'http' && operation.operation === 'subscription') {
      return refused([refusal(ErrorCode.BAD_USER_INPUT, 'Subscriptions are served over graphql-ws on this path, not over HTTP')]);
    }
    if (origin.method === 'GET' && operation.operation !== 'query') {
      return refused([refusal(ErrorCode.BAD_USER_INPUT, `Can only perform a ${operation.operation} operation from a POST request.`)], 405, { allow: 'POST' });
    }
    if (production && !origin.authenticated && usesIntrospection(document)) {
      return refused([refusal(ErrorCode.UNAUTHENTICATED, 'Introspection requires authentication')]);
    }

    if (request.variables != null && !isObject(request.variables)) return refused([refusal(ErrorCode.BAD_USER_INPUT, '`variables` must be an object if provided.')]);
    const variables = (request.variables ?? undefined) as Record<string, unknown> | undefined;
    const unsafe = unsafeVariables(variables);
    if (unsafe) return refused([refusal(ErrorCode.BAD_USER_INPUT, unsafe)]);
    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 10 });
    if (coerced.errors) return refused(coerced.errors.map((e) => refusal(ErrorCode.BAD_USER_INPUT, e.message, e.nodes)));
    try {
      assertCost(schema, document, variables, operationName);
    } catch (e) {
      if (e instanceof GraphQLError) return refused([e]);
      throw e;
    }
    return { ok: true, query: q.query, document, operation, operationName, variables, label: labelOf(operation) };
  }

  /** Runs a prepared query or mutation: jit for queries it compiled, graphql-js otherwise. */
  function execute(args: ExecutionArgs): ExecutionResult | Promise<ExecutionResult> {
    const key = jit && documentKeys.get(args.document);
    if (!jit || !key) return graphqlJsExecute(args);
    const operation = getOperationAST(args.document, args.operationName);
    return jit.run({
      document: args.document,
      operationName: args.operationName ?? null,
      operationType: operation?.operation ?? 'unresolved',
      documentKey: key,
      context: args.contextValue,
      variables: args.variableValues ?? undefined,
    });
  }

  return { prepare, execute, limits: GRAPHQL_LIMITS };
}

export type OperationPipeline = ReturnType<typeof createOperationPipeline>;
