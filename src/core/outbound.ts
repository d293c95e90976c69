/**
 * Connections the server makes on a tenant's behalf (connectors): every address a host
 * resolves to must be a public one unless the operator named the host
 * (EDM_CONNECTOR_ALLOW_HOSTS), and the connection goes to the very address that was checked,
 * so a name that resolves again to somewhere else (DNS rebinding) reaches nothing new.
 */
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { OutboundPolicy } from './resource.js';

/** A connection refused, a read that failed or timed out: the message says which, for `last_error`. */
export class OutboundError extends Error {}

const refused = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  refused.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local (fd00:ec2::254: a cloud's metadata)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed inside some networks)
  ['100::', 64], // discard-only
  ['ff00::', 8], // multicast
] as const) {
  refused.addSubnet(net, bits, 'ipv6');
}

/** The 16 bytes of an IPv6 address `isIP` accepted (hex or with a dotted IPv4 tail; a zone is dropped). */
function ipv6Bytes(address: string): number[] {
  let text = address.replace(/%.*$/, '');
  const dotted = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, text.length - dotted[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const part = (s: string | undefined) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const left = part(head);
  const right = part(tail);
  const gap: number[] = Array(tail === undefined ? 0 : 8 - left.length - right.length).fill(0);
  return [...left, ...gap, ...right].flatMap((g) => [g >> 8, g & 0xff]);
}

const zero = (bytes: number[]) => bytes.every((b) => b === 0);
const dottedQuad = (bytes: number[]) => bytes.join('.');

/**
 * The IPv4 addresses an IPv6 address may carry (RFC 4291 mapped and compatible, RFC 2765
 * translated, RFC 6052 NAT64, RFC 3056 6to4, RFC 4380 Teredo): connecting to it may reach them.
 */
function embeddedIPv4(b: number[]): string[] {
  if (zero(b.slice(0, 10)) && b[10] === 0xff && b[11] === 0xff) return [dottedQuad(b.slice(12))]; // ::ffff:0:0/96
  if (zero(b.slice(0, 8)) && b[8] === 0xff && b[9] === 0xff && zero(b.slice(10, 12))) {
    return [dottedQuad(b.slice(12))]; // ::ffff:0:0:0/96, SIIT
  }
  if (zero(b.slice(0, 12))) return [dottedQuad(b.slice(12))]; // ::/96, IPv4-compatible (deprecated)
  if (b[0] === 0x20 && b[1] === 0x02) return [dottedQuad(b.slice(2, 6))]; // 2002::/16, 6to4
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0 && b[3] === 0) {
    // 2001::/32, Teredo (RFC 4380): the server's IPv4 address, then the client's, inverted.
    return [dottedQuad(b.slice(4, 8)), dottedQuad(b.slice(12).map((x) => x ^ 0xff))];
  }
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b) {
    // NAT64 (64:ff9b::/32). The well-known prefix 64:ff9b::/96 has one layout; the local-use
    // 64:ff9b:1::/48 and the rest may be any RFC 6052 prefix length, each placing the IPv4
    // address elsewhere around the reserved octet 8: every layout the address fits decides.
    if (zero(b.slice(4, 12))) return [dottedQuad(b.slice(12))];
    const found = [dottedQuad(b.slice(12))]; // /96
    for (const [v4, suffix] of [
      [[4, 5, 6, 7], 9], // /32
      [[5, 6, 7, 9], 10], // /40
      [[6, 7, 9, 10], 11], // /48
      [[7, 9, 10, 11], 12], // /56
      [[9, 10, 11, 12], 13], // /64
    ] as const) {
      if (b[8] === 0 && zero(b.slice(suffix))) found.push(dottedQuad(v4.map((i) => b[i])));
    }
    return found;
  }
  return [];
}

/** Whether an address is private, loopback, link-local, metadata or otherwise not public. */
export function isRefusedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return refused.check(address, 'ipv4');
  if (family !== 6) return true;
  if (refused.check(address, 'ipv6')) return true;
  // IPv4 inside IPv6, in hex (as URL and resolvers write it) or dotted: the IPv4 address decides too.
  return embeddedIPv4(ipv6Bytes(address)).some((v4) => refused.check(v4, 'ipv4'));
}

/** When a read that starts now must be over (the policy's timeout; 0: never). */
export function readDeadline(policy: OutboundPolicy): number {
  // On the monotonic clock: a wall clock set back would lengthen what is left of it.
  return policy.timeoutMs > 0 ? performance.now() + policy.timeoutMs : Number.POSITIVE_INFINITY;
}

/**
 * The address to connect to for `host`: each one it resolves to checked, the first one used.
 * The lookup counts within the read's `deadline`: a resolver that does not answer in time fails
 * the read (its lookup cannot be called off, but nothing waits for it).
 */
export async function resolveAllowed(
  host: string,
  policy: OutboundPolicy,
  deadline = readDeadline(policy),
): Promise<{ address: string; family: number }> {
  // As EDM_CONNECTOR_ALLOW_HOSTS is read: lower case, no brackets, no trailing dot.
  const name = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  let found: { address: string; family: number }[];
  if (isIP(name)) found = [{ address: name, family: isIP(name) }];
  else {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      if (deadline === Number.POSITIVE_INFINITY) return;
      timer = setTimeout(
        () => reject(new OutboundError(`${host} did not resolve within ${policy.timeoutMs} ms`)),
        Math.max(0, deadline - performance.now()),
      );
    });
    try {
      found = await Promise.race([lookup(name, { all: true, verbatim: true }), late]);
    } catch (err) {
      if (err instanceof OutboundError) throw err;
      throw new OutboundError(`${host} does not resolve`);
    } finally {
      clearTimeout(timer);
    }
  }
  if (!policy.allowHosts.includes(name)) {
    // Which address is not said: the error is every reader's (`last_error`), and would map the
    // names of the server's own network to its addresses for them.
    if (found.some((a) => isRefusedAddress(a.address))) {
      throw new OutboundError(
        `${host} resolves to a private, loopback, link-local or metadata address: refused (EDM_CONNECTOR_ALLOW_HOSTS can allow it)`,
      );
    }
  }
  if (found.length === 0) throw new OutboundError(`${host} does not resolve`);
  return found[0];
}

/** A lookup that answers the address already checked, whatever the resolver would say now. */
function pinned(target: { address: string; family: number }): LookupFunction {
  return ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [target]);
    else callback(null, target.address, target.family);
  }) as unknown as LookupFunction;
}

/**
 * A failure's text with the address a host was reached at said as the host (Node's
 * `connect ECONNREFUSED 10.0.0.7:5432`): the text is every reader's (`last_error`), and would map
 * the names of the server's network, allowed ones too, to its addresses.
 */
export function withoutAddress(message: string, address: string, host: string): string {
  if (address === host) return message;
  return message.replaceAll(`[${address}]`, host).replaceAll(address, host);
}

/** The most an answer may hold. */
export const MAX_ANSWER_BYTES = 1_000_000;

/**
 * GETs a JSON document over http(s) from an allowed address, within the policy's time and
 * MAX_ANSWER_BYTES, following no redirects.
 */
export async function fetchJson(
  rawUrl: string,
  headers: Record<string, string>,
  policy: OutboundPolicy,
  /** Called as the GET is sent (its host looked up and checked): when the feed is read. */
  sending?: () => void,
): Promise<unknown> {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new OutboundError(`${rawUrl} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OutboundError('only http and https URLs');
  // One deadline for the lookup and the GET: the timeout is the read's in all.
  const deadline = readDeadline(policy);
  const target = await resolveAllowed(url.hostname, policy, deadline);
  const where = `${url.origin}${url.pathname}`;
  return new Promise((resolve, reject) => {
    let req: http.ClientRequest | undefined;
    let timer: NodeJS.Timeout | undefined;
    const fail = (message: string) => {
      clearTimeout(timer);
      req?.destroy();
      reject(new OutboundError(message));
    };
    try {
      sending?.();
      req = open(url, headers, target);
    } catch (err) {
      // Node refuses to send some requests at all (a header with a line break, a character past
      // U+00FF): the read fails, as any other, and nothing is left behind to fire later.
      fail(`${where}: ${withoutAddress((err as Error).message, target.address, url.hostname)}`);
      return;
    }
    // 0: no limit, as for a postgres connector's read (pg's own meaning of 0).
    if (deadline !== Number.POSITIVE_INFINITY) {
      const left = Math.max(0, deadline - performance.now());
      timer = setTimeout(() => fail(`${where} did not answer within ${policy.timeoutMs} ms`), left);
    }
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        fail(`${where} answered ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) fail(`${where} answered more than ${MAX_ANSWER_BYTES} bytes`);
        else chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new OutboundError(`${where} answered something that is not JSON`));
        }
      });
      res.on('error', (err) => fail(`${where}: ${withoutAddress(err.message, target.address, url.hostname)}`));
    });
    req.on('error', (err) => fail(`${where}: ${withoutAddress(err.message, target.address, url.hostname)}`));
    req.end();
  });
}

/** The GET itself, to the address the policy resolved (throws where Node will not send it). */
function open(url: URL, headers: Record<string, string>, target: Awaited<ReturnType<typeof resolveAllowed>>) {
  return (url.protocol === 'https:' ? https : http).request(url, {
    method: 'GET',
    headers: { accept: 'application/json', 'user-agent': 'edm-connector/1', ...headers },
    lookup: pinned(target),
  });
}
