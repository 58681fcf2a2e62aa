import { createHash } from 'node:crypto';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  GraphQLError,
  Lexer,
  Source,
  TokenKind,
  visit,
  type DocumentNode,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
// The CJS build on purpose: its ESM build imports graphql's .mjs files, a second copy of graphql
// next to the CJS one that everything else here loads ("another module or realm").
import { createRequire } from 'node:module';
import type { ComplexityEstimator } from 'graphql-query-complexity';

const { getComplexity, simpleEstimator } = createRequire(import.meta.url)('graphql-query-complexity') as typeof import('graphql-query-complexity');

/**
 * Limits on what one GraphQL operation may ask for, shared by HTTP and graphql-ws. The contract's
 * deepest honest path (alarms -> device -> shares -> grantee, inside connection edges) is 7 levels;
 * GraphiQL's own introspection query is deeper but exempt from the depth rule.
 */
export const GRAPHQL_LIMITS = {
  /** Selection depth: twice the deepest useful path. */
  maxDepth: 14,
  /** Aliases per operation: enough for a dashboard asking for a few devices by id, not for 10,000 copies. */
  maxAliases: 30,
  /** Directives per operation (@include/@skip): no honest query needs more. */
  maxDirectives: 20,
  /** Lexical tokens per document: GraphiQL's introspection query is about 300. */
  maxTokens: 3000,
  /** Estimated cost: list fields multiply their children by `first` (default 50). */
  maxCost: 20_000,
} as const;

const tooComplex = (message: string) => new GraphQLError(message, { extensions: { code: 'QUERY_TOO_COMPLEX' } });

/** Adapts a graphql-armor rule so its rejections become QUERY_TOO_COMPLEX validation errors. */
function armored<O>(factory: (options: O) => ValidationRule, options: O): ValidationRule {
  return (context: ValidationContext) => {
    const onReject = [(_ctx: ValidationContext | null, err: GraphQLError) => context.reportError(tooComplex(err.message.replace(/^Syntax Error: /, '')))];
    return factory({ ...options, propagateOnRejection: false, onReject } as O)(context);
  };
}

/** Validation rules applied on both transports, after graphql-js's specified rules. */
export const limitRules: readonly ValidationRule[] = [
  armored(maxDepthRule, { n: GRAPHQL_LIMITS.maxDepth, ignoreIntrospection: true, exposeLimits: true }),
  armored(maxAliasesRule, { n: GRAPHQL_LIMITS.maxAliases, exposeLimits: true }),
  armored(maxDirectivesRule, { n: GRAPHQL_LIMITS.maxDirectives, exposeLimits: true }),
];

/** Counts tokens without building an AST, stopping at the limit. Remembers documents that passed. */
const withinTokenLimitCache = new Map<string, true>();
export function withinTokenLimit(query: string, limit = GRAPHQL_LIMITS.maxTokens): boolean {
  const key = query.length > 256 ? createHash('sha1').update(query).digest('base64') : query;
  if (withinTokenLimitCache.has(key)) return true;
  const lexer = new Lexer(new Source(query));
  let count = 0;
  try {
    while (lexer.advance().kind !== TokenKind.EOF) {
      if (++count > limit) return false;
    }
  } catch {
    return true; // a syntax error: let the parser report it properly
  }
  if (withinTokenLimitCache.size > 2000) withinTokenLimitCache.clear();
  withinTokenLimitCache.set(key, true);
  return true;
}

/** List fields taking `first` cost `first` times their children; everything else one per field. */
const paginatedEstimator: ComplexityEstimator = ({ args, childComplexity }) => {
  if (typeof args.first === 'number') return 1 + Math.max(1, args.first) * childComplexity;
  return undefined;
};

/**
 * Costs already estimated, per parsed document (the pipeline reuses the parsed document of a
 * repeated query), then per operation and variables: the estimate walks the whole document.
 * 'skip' = the estimator could not run (left for execution to report); 'too-many-nodes' = over its node limit.
 */
const costCache = new WeakMap<DocumentNode, Map<string, number | 'skip' | 'too-many-nodes'>>();
const MAX_COSTS_PER_DOCUMENT = 100;

/** Throws QUERY_TOO_COMPLEX when the estimated cost of the operation is over the limit. */
export function assertCost(schema: GraphQLSchema, document: DocumentNode, variables: Record<string, unknown> | undefined, operationName?: string | null) {
  let byArgs = costCache.get(document);
  if (!byArgs) costCache.set(document, (byArgs = new Map()));
  const key = `${operationName ?? ''}\u0000${variables ? JSON.stringify(variables) : ''}`;
  let cost = byArgs.get(key);
  if (cost === undefined) {
    cost = estimateCost(schema, document, variables, operationName);
    if (byArgs.size >= MAX_COSTS_PER_DOCUMENT) byArgs.clear();
    byArgs.set(key, cost);
  }
  if (cost === 'too-many-nodes') throw tooComplex('Query is too complex');
  if (cost !== 'skip' && cost > GRAPHQL_LIMITS.maxCost) throw tooComplex(`Query cost ${cost} exceeds the limit of ${GRAPHQL_LIMITS.maxCost}`);
}

function estimateCost(schema: GraphQLSchema, document: DocumentNode, variables: Record<string, unknown> | undefined, operationName?: string | null): number | 'skip' | 'too-many-nodes' {
  try {
    return getComplexity({
      schema,
      query: document,
      variables: variables ?? {},
      operationName: operationName ?? undefined,
      estimators: [paginatedEstimator, simpleEstimator({ defaultComplexity: 1 })],
      maxQueryNodes: 20_000,
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : '';
    if (/query nodes/i.test(message)) return 'too-many-nodes';
    // Anything else (variables of the wrong type, unknown operation) is left for execution to
    // report as BAD_USER_INPUT, which it does with a precise message.
    return 'skip';
  }
}

const introspectionCache = new WeakMap<DocumentNode, boolean>();

export function usesIntrospection(document: DocumentNode): boolean {
  let found = introspectionCache.get(document);
  if (found === undefined) introspectionCache.set(document, (found = findsIntrospection(document)));
  return found;
}

function findsIntrospection(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    Field(node) {
      if (node.name.value === '__schema' || node.name.value === '__type') {
        found = true;
        return false;
      }
      return undefined;
    },
  });
  return found;
}
