import { GraphQLScalarType, Kind } from 'graphql';

const MIN_TIME = Date.parse('0001-01-01T00:00:00Z');
const MAX_TIME = Date.parse('9999-12-31T23:59:59.999Z');

function toDate(value: unknown): Date {
  if (typeof value !== 'string' || value.length > 64) throw new TypeError('DateTime must be an ISO-8601 string');
  // An offset or Z is required: a bare local time means nothing to a server in UTC.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(value)) {
    throw new TypeError('DateTime must be ISO-8601 with an offset, e.g. 2026-11-21T10:00:00Z');
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError('DateTime is not a valid date');
  // Years 1..9999 in UTC: what ISO-8601 writes with four digits and Postgres stores.
  if (date.getTime() < MIN_TIME || date.getTime() > MAX_TIME) throw new TypeError('DateTime must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z');
  return date;
}

/** ISO-8601 with offset on input; always emitted in UTC ("2026-11-21T10:00:00.000Z"). */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'ISO-8601 date and time with offset, always emitted in UTC ("2026-11-21T10:00:00.000Z").',
  serialize(value) {
    const date = value instanceof Date ? value : new Date(value as string);
    if (Number.isNaN(date.getTime())) throw new TypeError('DateTime cannot represent an invalid date');
    return date.toISOString();
  },
  parseValue: toDate,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new TypeError('DateTime must be a string');
    return toDate(ast.value);
  },
});
