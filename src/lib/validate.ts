import { z } from 'zod';
import parsePhoneNumber from 'libphonenumber-js/max';
import { CommonError } from './domain-error';

/** Parses `value` with `schema`, turning a failure into BAD_INPUT that names the field but not the value. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
  throw CommonError.badInput(`${where}${issue.message}`);
}

export const emailSchema = z
  .string()
  .trim()
  .max(254, 'too long')
  .toLowerCase()
  .pipe(z.email({ message: 'not a valid email address' }));

/** E.164 phone numbers; accepts common spellings ("+1 415-555-0123") and returns +14155550123. */
export const phoneSchema = z
  .string()
  .trim()
  .max(32, 'too long')
  .transform((v, ctx) => {
    const parsed = v.startsWith('+') ? parsePhoneNumber(v) : undefined;
    if (!parsed || !parsed.isValid()) {
      ctx.addIssue({ code: 'custom', message: 'not a valid phone number in international format (+...)' });
      return z.NEVER;
    }
    return parsed.number as string;
  });

export type Login = { kind: 'email'; value: string } | { kind: 'phone'; value: string };

/** An email or a phone, told apart by the '@'. */
export const loginSchema = z
  .string()
  .trim()
  .min(1, 'required')
  .max(254, 'too long')
  .transform((v, ctx): Login => {
    const schema = v.includes('@') ? emailSchema : phoneSchema;
    const parsed = schema.safeParse(v);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', message: 'must be an email address or an international phone number' });
      return z.NEVER;
    }
    return { kind: v.includes('@') ? 'email' : 'phone', value: parsed.data };
  });

export const uuidSchema = z.uuid({ message: 'not a valid id' });
/** True when `value` could be an id; lets callers answer NOT_FOUND for junk ids without a query. */
export const isUuid = (value: string) => uuidSchema.safeParse(value).success;
