import { GraphQLScalarType, Kind } from 'graphql';

function toDate(value: unknown): Date {
  if (typeof value !== 'string' || value.length > 64) throw new TypeError('DateTime must be an ISO-8601 string');
  // An offset or Z is required: a bare local time means nothing to a server in UTC.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(value)) {
    throw new TypeError('DateTime must be ISO-8601 with an offset, e.g. 2026-11-21T10:00:00Z');
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError('DateTime is not a valid date');
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
