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
  ['ff00::', 8], // multicast
] as const) {
  refused.addSubnet(net, bits, 'ipv6');
}

/** Whether an address is private, loopback, link-local, metadata or otherwise not public. */
export function isRefusedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return refused.check(address, 'ipv4');
  if (family !== 6) return true;
  // IPv4 inside IPv6 (::ffff:a.b.c.d, and NAT64's 64:ff9b::/96): the IPv4 address decides.
  const embedded = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (embedded) return refused.check(embedded, 'ipv4');
  return refused.check(address, 'ipv6');
}

/** The address to connect to for `host`: each one it resolves to checked, the first one used. */
export async function resolveAllowed(
  host: string,
  policy: OutboundPolicy,
): Promise<{ address: string; family: number }> {
  const name = host.toLowerCase().replace(/^\[|\]$/g, '');
  let found: { address: string; family: number }[];
  if (isIP(name)) found = [{ address: name, family: isIP(name) }];
  else {
    try {
      found = await lookup(name, { all: true, verbatim: true });
    } catch {
      throw new OutboundError(`${host} does not resolve`);
    }
  }
  if (!policy.allowHosts.includes(name)) {
    const bad = found.find((a) => isRefusedAddress(a.address));
    if (bad) {
      throw new OutboundError(
        `${host} resolves to ${bad.address}, a private, loopback, link-local or metadata address: refused (EDM_CONNECTOR_ALLOW_HOSTS can allow it)`,
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
): Promise<unknown> {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new OutboundError(`${rawUrl} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OutboundError('only http and https URLs');
  const target = await resolveAllowed(url.hostname, policy);
  const where = `${url.origin}${url.pathname}`;
  return new Promise((resolve, reject) => {
    const fail = (message: string) => {
      clearTimeout(timer);
      req.destroy();
      reject(new OutboundError(message));
    };
    const timer = setTimeout(() => fail(`${where} did not answer within ${policy.timeoutMs} ms`), policy.timeoutMs);
    const req = (url.protocol === 'https:' ? https : http).request(
      url,
      {
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'edm-connector/1', ...headers },
        lookup: pinned(target),
      },
      (res) => {
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
        res.on('error', (err) => fail(`${where}: ${err.message}`));
      },
    );
    req.on('error', (err) => fail(`${where}: ${err.message}`));
    req.end();
  });
}
