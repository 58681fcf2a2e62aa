import { ApiKeysPanel } from './api-keys-panel';
import { ChangePasswordForm } from './change-password-form';
import { SessionsPanel } from './sessions-panel';
import { TwoFactorPanel } from './two-factor-panel';

export function AccountPage() {
  return (
    <div className="stack">
      <h1>Account</h1>
      <ChangePasswordForm />
      <TwoFactorPanel />
      <SessionsPanel />
      <ApiKeysPanel />
    </div>
  );
}
