import { createRoot } from 'react-dom/client';
import { App } from './app';
import { SessionStore } from './lib/session-store';
import './console.css';

// Nothing secret belongs in this page's address: a stray query or fragment is dropped at once.
if (window.location.search) window.history.replaceState(null, '', window.location.pathname + window.location.hash);
createRoot(document.getElementById('root')!).render(<App store={new SessionStore()} />);
