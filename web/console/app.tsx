import { useEffect, useMemo, useState } from 'react';
import { Provider } from 'urql';
import { AccountPage } from './account/account-page';
import { RegisterForm } from './account/register-form';
import { SignInForm } from './account/sign-in-form';
import { AlarmFeed } from './alarms/alarm-feed';
import { BindDeviceForm } from './devices/bind-device-form';
import { ClaimsPanel } from './devices/claims-panel';
import { DeviceList } from './devices/device-list';
import { DevicePage } from './devices/device-page';
import { LiveContext, StoreContext, useStore } from './lib/api-context';
import { createApiClients } from './lib/live-client';
import type { SessionStore } from './lib/session-store';
import { go, useHashRoute } from './lib/use-hash-route';
import { useSession } from './lib/use-session';
import { Notice } from './ui/notice';

export function App({ store }: { store: SessionStore }) {
  return (
    <StoreContext.Provider value={store}>
      <Shell />
    </StoreContext.Provider>
  );
}

function Shell() {
  const store = useStore();
  const session = useSession();
  const [registering, setRegistering] = useState(false);
  if (!session) {
    if (store.restoring) return <p className="narrow">Signing you in again…</p>;
    return <main className="narrow">{registering ? <RegisterForm onSignIn={() => setRegistering(false)} /> : <SignInForm onRegister={() => setRegistering(true)} />}</main>;
  }
  // One pair of clients per signed-in user: a new sign-in starts from empty caches and sockets.
  return <SignedIn key={session.user.id} />;
}

function SignedIn() {
  const store = useStore();
  const session = useSession()!;
  const clients = useMemo(() => createApiClients(store), [store]);
  useEffect(() => () => clients.dispose(), [clients]);
  const route = useHashRoute();
  const [version, setVersion] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);
  const changed = () => setVersion((v) => v + 1);
  const who = session.user.displayName ?? session.user.email ?? session.user.phone ?? '';
  const deviceId = /^devices\/(.+)$/.exec(route)?.[1];
  useEffect(() => {
    if (route) setNotice(null);
  }, [route]);
  return (
    <LiveContext.Provider value={clients}>
      <Provider value={clients.urql}>
        <header className="top">
          <a href="#/" className="brand">
            Vigil
          </a>
          <nav aria-label="Main">
            <a href="#/" aria-current={route === '' ? 'page' : undefined}>
              Devices
            </a>
            <a href="#/alarms" aria-current={route === 'alarms' ? 'page' : undefined}>
              Alarms
            </a>
            <a href="#/account" aria-current={route === 'account' ? 'page' : undefined}>
              Account
            </a>
          </nav>
          <span data-testid="signed-in-as">{who}</span>
          <button type="button" onClick={() => void store.signOut()}>
            Sign out
          </button>
        </header>
        <main>
          {notice && <Notice>{notice}</Notice>}
          {deviceId ? (
            <DevicePage
              deviceId={decodeURIComponent(deviceId)}
              onGone={(text) => {
                changed();
                go('');
                setTimeout(() => setNotice(text));
              }}
            />
          ) : route === 'alarms' ? (
            <AlarmFeed title="Alarms" />
          ) : route === 'account' ? (
            <AccountPage />
          ) : (
            <div className="home">
              <div className="stack">
                <DeviceList version={version} onChanged={changed} />
                <BindDeviceForm onBound={changed} onClaimed={changed} />
                <ClaimsPanel version={version} />
              </div>
              <AlarmFeed />
            </div>
          )}
        </main>
      </Provider>
    </LiveContext.Provider>
  );
}
