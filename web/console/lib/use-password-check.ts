import { useEffect, useState } from 'react';
import type { PasswordIdentity } from '../../../src/accounts/password-policy';

type Checker = (password: string, identity: PasswordIdentity) => string | null;
let loading: Promise<Checker> | undefined;

/** zxcvbn and its dictionaries (most of this page's bytes) load on the first keystroke only. */
function loadChecker(): Promise<Checker> {
  loading ??= Promise.all([
    import('@zxcvbn-ts/core'),
    import('@zxcvbn-ts/language-common'),
    import('@zxcvbn-ts/language-en'),
    import('../../../src/accounts/password-policy'),
  ]).then(([core, common, en, policy]) => {
    const zxcvbn = new core.ZxcvbnFactory({
      dictionary: { ...common.dictionary, ...en.dictionary },
      graphs: common.adjacencyGraphs,
      translations: en.translations,
    });
    return (password, identity) => policy.passwordProblem(zxcvbn, password, identity);
  });
  return loading;
}

export type PasswordVerdict = { state: 'empty' } | { state: 'checking' } | { state: 'weak'; reason: string } | { state: 'strong' };

/** Live feedback with the server's own rules (src/accounts/password-policy.ts); the server still decides. */
export function usePasswordCheck(password: string, identity: PasswordIdentity = {}): PasswordVerdict {
  const [verdict, setVerdict] = useState<PasswordVerdict>({ state: 'empty' });
  const { email, phone, displayName } = identity;
  useEffect(() => {
    if (!password) {
      setVerdict({ state: 'empty' });
      return;
    }
    let live = true;
    setVerdict((v) => (v.state === 'empty' ? { state: 'checking' } : v));
    void loadChecker().then((check) => {
      if (!live) return;
      const reason = check(password, { email, phone, displayName });
      setVerdict(reason ? { state: 'weak', reason } : { state: 'strong' });
    });
    return () => {
      live = false;
    };
  }, [password, email, phone, displayName]);
  return verdict;
}
