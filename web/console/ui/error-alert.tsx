import { describeError, type ApiError } from '../lib/api-errors';

/** An error in words, announced to screen readers; nothing when there is no error. */
export function ErrorAlert({ error, overrides, children }: { error?: ApiError | null; overrides?: Parameters<typeof describeError>[1]; children?: React.ReactNode }) {
  if (!error) return null;
  return (
    <div role="alert" className="error">
      <p>{describeError(error, overrides)}</p>
      {children}
    </div>
  );
}
