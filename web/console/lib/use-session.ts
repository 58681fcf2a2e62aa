import { useSyncExternalStore } from 'react';
import { useStore } from './api-context';
import type { Session } from './session-store';

/** The current session (null when signed out); re-renders on sign-in, refresh and sign-out. */
export function useSession(): Session | null {
  const store = useStore();
  return useSyncExternalStore(store.subscribe, () => store.session);
}
