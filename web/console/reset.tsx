import { createRoot } from 'react-dom/client';
import { ResetPage } from './account/reset-page';
import './console.css';

createRoot(document.getElementById('root')!).render(<ResetPage />);
