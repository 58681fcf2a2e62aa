import { createContext, useContext } from 'react';
import type { ApiClients } from './live-client';
import type { SessionStore } from './session-store';

export const StoreContext = createContext<SessionStore | null>(null);
export const LiveContext = createContext<ApiClients | null>(null);

export function useStore(): SessionStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error('useStore outside StoreContext');
  return store;
}

export function useLive(): ApiClients {
  const clients = useContext(LiveContext);
  if (!clients) throw new Error('useLive outside LiveContext');
  return clients;
}
