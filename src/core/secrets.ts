import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

const SEALED = 'sealed:v1:';

/**
 * Names of URL query parameters that carry a credential, read in lower case without `-`, `_` and
 * `.`: a signed URL's signature, the forms a token or an API key takes (RFC 6750 §2.3's
 * `access_token`, `api_key`, Google's `key`), secrets, passwords and sessions. The request log
 * masks their values; a connector's `config.url`, which every reader sees, may not hold one.
 */
const CREDENTIAL_PARAMS = new Set([
  'key',
  'apikey',
  'apitoken',
  'apisecret',
  'accesskey',
  'accesstoken',
  'authkey',
  'authtoken',
  'auth',
  'token',
  'secret',
  'clientsecret',
  'secretkey',
  'privatekey',
  'password',
  'passwd',
  'pwd',
  'pass',
  'signature',
  'sig',
  'session',
  'sessionid',
  'sid',
  'jwt',
  'bearer',
  'credential',
  'credentials',
]);

/** Whether a URL query parameter's name (decoded) says it carries a credential (CREDENTIAL_PARAMS). */
export function isCredentialParam(name: string): boolean {
  return CREDENTIAL_PARAMS.has(name.toLowerCase().replace(/[-_.]/g, ''));
}

/**
 * The keys `EDM_SECRET_KEY` derives by HKDF besides the list cursors' (PRODUCT.md §1): one
 * seals write-only secrets at rest (AES-256-GCM, a fresh nonce each time), one signs webhook
 * URLs (HMAC-SHA-256), one keys the fingerprints of requests under an Idempotency-Key
 * (HMAC-SHA-256). Every process of a deployment shares the server secret, so each opens and
 * checks what another wrote.
 */
export class ServerKeys {
  private readonly sealKey: Buffer;
  private readonly signKey: Buffer;
  /**
   * Keys a request's fingerprint, which is kept 24 h beside its Idempotency-Key: the body it
   * hashes may hold a write-only secret (a connector's), which a plain hash would let anyone
   * holding the database, or a backup of it, guess offline.
   */
  readonly requestKey: Uint8Array;
  /**
   * A one-way fingerprint of the server secret, stored with the data: a process started with
   * another secret (generated under another data dir, or changed) can tell. It reveals nothing
   * of the secret or of the keys derived from it.
   */
  readonly fingerprint: string;

  constructor(secretKey: Uint8Array) {
    this.sealKey = Buffer.from(hkdfSync('sha256', secretKey, 'edm', 'edm sealed field v1', 32));
    this.signKey = Buffer.from(hkdfSync('sha256', secretKey, 'edm', 'edm webhook signature v1', 32));
    this.requestKey = Buffer.from(hkdfSync('sha256', secretKey, 'edm', 'edm request fingerprint v1', 32));
    this.fingerprint = Buffer.from(hkdfSync('sha256', secretKey, 'edm', 'edm secret fingerprint v1', 16)).toString(
      'base64url',
    );
  }

  /** `sealed:v1:` + base64url(nonce ‖ ciphertext ‖ tag), bound to `context` (the row it belongs to). */
  seal(plaintext: string, context: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.sealKey, nonce);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return SEALED + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
  }

  /** The plaintext of `seal`'s output for the same context; throws if it was altered or moved. */
  open(sealed: string, context: string): string {
    if (!sealed.startsWith(SEALED)) throw new Error('not a sealed value');
    const raw = Buffer.from(sealed.slice(SEALED.length), 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.sealKey, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  }

  sign(message: string): string {
    return createHmac('sha256', this.signKey).update(message).digest('base64url');
  }

  verify(message: string, signature: string): boolean {
    const expected = Buffer.from(this.sign(message));
    const given = Buffer.from(signature);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }
}
