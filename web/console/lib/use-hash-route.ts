import { useEffect, useState } from 'react';

/** The part after `#` without the slash: "" (home), "devices/<id>", "alarms", "account". */
const read = () => window.location.hash.replace(/^#\/?/, '');

/** Client-side views in the hash, so the server serves one page at `/` and nothing else. */
export function useHashRoute(): string {
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

export const go = (route: string) => {
  window.location.hash = route ? `#/${route}` : '';
};
