/**
 * The EDM client: `import { createClient } from 'edm/client'`. It imports nothing of the
 * server at run time (types only) and needs nothing but `fetch`.
 */
export { createClient } from './client.js';
export {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  type ErrorCode,
  type FieldErrorCode,
  InternalServerError,
  NotFoundError,
  NotModifiedError,
  PermissionDeniedError,
  PreconditionFailedError,
  PreconditionRequiredError,
  type Problem,
  RateLimitError,
  UnprocessableEntityError,
} from './errors.js';
export { type ListEnvelope, Page, PagePromise } from './pagination.js';
export { type OperationRoute, operationRoute } from './routes.js';
export type { ClientOptions, LockOptions, RequestOptions, WriteOptions } from './transport.js';
export type {
  Client,
  ClientOf,
  CreateParams,
  DeleteOptions,
  Document,
  ListParams,
  ModuleClient,
  OperationMethod,
  PageParams,
  ResourceClient,
  ResourceMethods,
  Schemas,
  UpdateParams,
} from './types.js';
