import type { AuthService } from './accounts/auth.service';

/**
 * Every service the API reaches, built once per app in src/app.ts (the composition root) and
 * handed to resolvers through the context.
 */
export interface Services {
  auth: AuthService;
}
