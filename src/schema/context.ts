import type { Logger } from 'pino';
import type { Caller } from '../accounts/caller';
import type { RequestMeta } from '../accounts/auth.service';
import type { Services } from '../services';

/** The one context both transports build (HTTP per request, graphql-ws per operation). */
export interface GraphqlContext {
  caller: Caller | null;
  meta: RequestMeta;
  requestId: string;
  services: Services;
  log: Logger;
}
